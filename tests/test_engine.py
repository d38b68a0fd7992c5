"""husai.engine: a sweep of real units (a tiny grokking run, SAE sets on its activations and on synthetic data)
gives the same cached bits serially, in local worker processes and on a local two-worker Ray cluster; a worker
killed mid-unit is retried and its half-written output never read; deps run first; a second call skips all.

The serial run is the reference (computed once per module). Ray is the optional extra husai[ray]: its tests
skip, saying so, where it is not installed."""
import json, os, sys, tempfile, time, warnings
from dataclasses import dataclass
from pathlib import Path
import pytest, torch
from husai.engine import GrokUnit, GrokActs, ActsFile, SAEUnit, Unit, run_units, parse_engine, sae_cache_folder
from husai.core import HusaiError, load_tensors, save_json
from husai.grokking import grok_config, train_grokking
from husai.sae import SAEConfig
from husai.synthetic import SyntheticConfig
from husai.train_sae import TrainConfig, train_saes

TINY = grok_config('quick', p=23, d_model=32, d_head=8, d_mlp=64, steps=40, log_every=20, checkpoint_every=20)
TC = TrainConfig(steps=80, batch_size=64)
TIMINGS = {'seconds', 'sec_per_step', 'seconds_to_grok'}

def sweep(sae=SAEUnit, **kw) -> list:
    "Four SAE sets (two on the grokking run's activations, whose GrokUnit only their deps name; two on synthetic data)."
    return [sae(GrokActs(TINY), SAEConfig('topk', d_sae=48, k=4), [0, 1], TC, **kw),
            SAEUnit(GrokActs(TINY, site='mlp_hidden.0'), SAEConfig('relu', d_sae=64, l1_coef=3.0), [0, 1], TC),
            SAEUnit(SyntheticConfig(n_samples=3000), SAEConfig('topk', d_sae=32, k=3), [0, 1, 2], TC),
            SAEUnit(SyntheticConfig(n_samples=3000, seed=1), SAEConfig('batchtopk', d_sae=32, k=3), [0], TC)]

@dataclass
class DiesOnce(SAEUnit):
    "The same unit (same key, same folder) whose first try trains, tears saes.safetensors, and kills its worker before result.json."
    marker: str = ''

    def run(self):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            import husai.train_sae as ts
            save = ts.save_json
            def die(obj, path):
                if Path(path).name == 'result.json':
                    (Path(path).parent/'saes.safetensors').write_bytes(b'torn')   # what a writer killed mid-file leaves
                    os._exit(17)
                return save(obj, path)
            ts.save_json = die
        return super().run()

@dataclass
class Stamp(Unit):
    "A unit that records when it ran (to check that deps finish before their dependents start)."
    name: str
    folder: str
    after: tuple = ()
    kind = 'stamp'

    def inputs(self): return {'name': self.name, 'after': [u.key for u in self.after]}
    @property
    def deps(self): return list(self.after)
    def done(self): return (Path(self.folder)/f'{self.name}.json').exists()
    def run(self):
        t0 = time.time(); time.sleep(0.5)
        save_json({'start': t0, 'end': time.time(), 'pid': os.getpid()}, Path(self.folder)/f'{self.name}.json')

def diamond(folder) -> list:
    a = Stamp('a', str(folder)); b = Stamp('b', str(folder), (a,)); c = Stamp('c', str(folder), (a,))
    return [Stamp('d', str(folder), (b, c))]

def check_diamond(folder):
    t = {n: json.loads((Path(folder)/f'{n}.json').read_text()) for n in 'abcd'}
    assert t['b']['start'] >= t['a']['end'] and t['c']['start'] >= t['a']['end']
    assert t['d']['start'] >= max(t['b']['end'], t['c']['end'])

def _strip(o):
    if isinstance(o, dict): return {k: _strip(v) for k, v in o.items() if k not in TIMINGS}
    if isinstance(o, list): return [_strip(v) for v in o]
    return o

def snapshot(root) -> dict:
    "What the units left in the cache, by path: every tensor's dtype, shape and raw bytes; every JSON file without timings."
    out = {}
    for f in sorted(Path(root).rglob('*')):
        rel = str(f.relative_to(root))
        if f.suffix == '.safetensors':
            out[rel] = {k: (str(v.dtype), tuple(v.shape), v.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
                        for k, v in load_tensors(f).items()}
        elif f.suffix == '.json': out[rel] = _strip(json.loads(f.read_text()))
    return out

@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path/'cache'
    monkeypatch.setenv('HUSAI_CACHE', str(d))
    return d

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "The serial run of the sweep, from an empty cache: its summary and its snapshot."
    d = tmp_path_factory.mktemp('serial')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('HUSAI_CACHE', str(d))
        r = run_units(sweep(), engine='serial', progress=False)
    assert (r['units'], r['done'], r['skipped'], r['failed'], r['retried']) == (5, 5, 0, 0, 0), r
    snap = snapshot(d)
    assert sum('/saes.safetensors' in k for k in snap) == 4 and sum(k.startswith('transformer/') for k in snap) >= 3
    return r, snap

def _check_engine_run(eng, reference, cache, tmp_path):
    "The sweep, with one unit whose worker dies, and a diamond of stamps: same bits as serial, a retry, deps first, then all skipped."
    ref, ref_snap = reference
    marker = tmp_path/'died'
    units = diamond(tmp_path/'stamps') + sweep(DiesOnce, marker=str(marker))   # stamps first: two slots free at once
    r = run_units(units, engine=eng, progress=False)
    assert (r['units'], r['done'], r['failed'], r['retried']) == (9, 9, 0, 1), r
    died = r['per_unit'][units[1].key]
    assert died['tries'] == 2 and died['status'] == 'done'
    assert int(marker.read_text()) != os.getpid()                      # it died in a worker, not here
    assert [k for k, v in r['per_unit'].items() if v['kind'] != 'stamp'] == list(ref['per_unit'])   # the grokking run before its SAEs
    assert snapshot(cache) == ref_snap                                 # tensors and metrics, bit for bit
    check_diamond(tmp_path/'stamps')
    again = run_units(units, engine=eng, progress=False)
    assert (again['done'], again['skipped'], again['failed']) == (0, 9, 0), again
    return r

def test_local_workers_give_the_serial_bits_and_survive_a_killed_worker(reference, cache, tmp_path):
    r = _check_engine_run('local=2', reference, cache, tmp_path)
    print(f"local=2: {r['seconds']:.1f} s (serial {reference[0]['seconds']:.1f} s)")

@pytest.fixture(scope='module')
def ray_cluster():
    "A local Ray cluster with two worker slots, on loopback only, that sends nothing out (no usage stats)."
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0',   # bind 127.0.0.1 (read when Ray is imported)
                     'RAY_USAGE_STATS_ENABLED': '0', 'RAY_AUTH_MODE': 'disabled'}.items(): mp.setenv(k, v)
        mp.delenv('RAY_ADDRESS', raising=False)
        # Ray's helper processes must report to the raylet within a fixed time (15 s). Each imports jsonschema, which
        # imports the optional rfc3987_syntax (installed here by JupyterLab's jupyter-events, not by Ray) and builds its
        # grammar: 1-7 s of CPU per helper on a busy 2-core machine, enough to miss the deadline. The helpers do not
        # need it (jsonschema skips that format check without it), so the test's cluster starts with it hidden.
        shim = Path(tempfile.mkdtemp())/'rfc3987_syntax'; shim.mkdir()
        (shim/'__init__.py').write_text("raise ImportError('hidden from Ray helpers by tests/test_engine.py')\n")
        mp.setenv('PYTHONPATH', os.pathsep.join(filter(None, [str(shim.parent), os.environ.get('PYTHONPATH')])))
        ray = pytest.importorskip('ray', reason='Ray is the optional extra: pip install -e ".[ray]"')
        t0, err = time.time(), None
        for _ in range(2):   # Ray's helpers must report within a fixed 15 s: a loaded machine can miss it
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20); break
            except Exception as e: err = e; ray.shutdown()
        else: pytest.skip(f"Ray's local cluster did not start twice in {time.time() - t0:.0f} s ({str(err)[:200]})")
        print(f'Ray local cluster up in {time.time() - t0:.1f} s')
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # this module's test units travel by value
        try: yield ray
        finally: ray.shutdown()

def test_ray_gives_the_serial_bits_and_survives_a_killed_worker(ray_cluster, reference, cache, tmp_path):
    assert ray_cluster.cluster_resources().get('CPU') == 2
    r = _check_engine_run('ray', reference, cache, tmp_path)
    pids = {json.loads((tmp_path/'stamps'/f'{n}.json').read_text())['pid'] for n in 'abcd'}
    assert os.getpid() not in pids
    print(f"ray: {r['seconds']:.1f} s (serial {reference[0]['seconds']:.1f} s)")

def test_a_notebook_after_the_engine_trains_nothing(cache, monkeypatch):
    "The units' outputs are the very cache entries `train_grokking` and `train_saes(..., cache=True)` read."
    run_units(sweep(), progress=False)
    import husai.grokking, husai.train_sae
    def no(*a, **k): raise AssertionError('trained again')
    monkeypatch.setattr(husai.grokking, '_save_ckpt', no); monkeypatch.setattr(husai.train_sae, '_fit', no)
    run = train_grokking(TINY, progress=False)
    for u in sweep():
        res = train_saes(u.acts(), u.sae_cfg, u.seeds, u.train_cfg, progress=False, cache=True)
        assert res.cache_path == u.folder() and torch.equal(res.saes.W_dec, u.result().saes.W_dec)
    assert run == GrokUnit(TINY).folder()

def test_a_folder_torn_by_a_dead_worker_is_not_done(reference, cache):
    "What a worker killed before result.json leaves (here a torn saes.safetensors) is computed again, never read or skipped."
    u = sweep()[2]
    folder = u.folder(); folder.mkdir(parents=True)
    (folder/'saes.safetensors').write_bytes(b'torn')
    assert not u.done()
    r = run_units([u], progress=False)
    assert (r['done'], r['skipped']) == (1, 0)
    assert snapshot(cache) == {k: v for k, v in reference[1].items() if k.startswith(f'sae/{folder.name}/')}

@pytest.mark.parametrize('tc', [TrainConfig(steps=5), TrainConfig(steps=5, eval_frac=0.0, batch_size=None),
                                TrainConfig(epochs=0.5, split_seed=3, lr_decay='cosine')])
def test_sae_cache_folder_is_the_folder_train_saes_uses(tc, cache):
    "The engine's copy of train_saes's cache key, against train_saes itself (this fails when the two drift apart)."
    acts = torch.randn(400, 12, generator=torch.Generator().manual_seed(0))
    for cfg, seeds in ((SAEConfig('topk', d_sae=16, k=2), [0, 1]), (SAEConfig('relu', d_in=12, d_sae=24, l1_coef=1.0), [3])):
        res = train_saes(acts, cfg, seeds, tc, progress=False, cache=True)
        assert res.cache_path == sae_cache_folder(acts, cfg, seeds, tc)
        assert res.cache_path.parent == cache/'sae'

def test_a_file_source_and_a_failing_unit(cache, tmp_path):
    "An .npy source is read by every worker; a unit that keeps failing is reported, and its dependents never run."
    import numpy as np
    np.save(tmp_path/'acts.npy', torch.randn(300, 8, generator=torch.Generator().manual_seed(1)).numpy())
    u = SAEUnit(tmp_path/'acts.npy', SAEConfig('topk', d_sae=16, k=2), [0], TrainConfig(steps=10))
    assert u.source == ActsFile(str(tmp_path/'acts.npy')) and u.deps == []
    missing = SAEUnit(tmp_path/'nope.npy', SAEConfig('topk', d_sae=16, k=2), [0], TrainConfig(steps=10))
    after = Stamp('x', str(tmp_path/'stamps'), (missing,))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        r = run_units([u, after], retries=1, progress=False)
    assert (r['done'], r['failed'], r['retried']) == (1, 2, 1), r
    assert r['per_unit'][missing.key]['tries'] == 2 and 'no such file' in r['per_unit'][missing.key]['error']
    assert r['per_unit'][after.key]['tries'] == 0 and not (tmp_path/'stamps').exists()
    assert '2 of 3 units failed' in str(w[-1].message)
    assert u.done() and u.result().seeds == [0]

def test_engine_strings_and_ray_missing(monkeypatch):
    assert parse_engine('local=3') == ('local', 3) and parse_engine('serial') == ('serial', None)
    for bad in ('local=0', 'threads', 'serial=1', 'ray='):
        with pytest.raises(HusaiError, match='is not one of'): parse_engine(bad)
    monkeypatch.setenv('HUSAI_ENGINE', 'local=2')
    assert parse_engine() == ('local', 2)
    monkeypatch.setitem(sys.modules, 'ray', None)          # as if Ray were not installed
    with pytest.raises(HusaiError, match=r"'ray=10.0.0.1:6379' needs Ray, which is not installed: pip install \"husai\[ray\]\""):
        parse_engine('ray=10.0.0.1:6379')

def test_reproduce_passes_the_engine_to_the_notebooks(tmp_path, monkeypatch, capsys):
    "`run_notebook(..., engine=E)` runs the kernel with HUSAI_ENGINE=E and leaves this process's environment as it was."
    import nbformat
    from husai.reproduce import run_notebook
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os; open('seen.txt', 'w').write(os.environ.get('HUSAI_ENGINE', '-') + ' ' + os.environ['HUSAI_SCALE'])")])
    nbformat.write(nb, tmp_path/'f.ipynb')
    monkeypatch.delenv('HUSAI_ENGINE', raising=False)
    run_notebook(tmp_path/'f.ipynb', 'tiny', engine='local=2', progress=False)
    assert (tmp_path/'seen.txt').read_text() == 'local=2 tiny'
    assert 'HUSAI_ENGINE' not in os.environ
    from husai.cli import main
    assert main(['reproduce', '--engine', 'local=zero', '--root', str(tmp_path)]) == 2   # before looking for notebooks
    assert "husai reproduce: error: engine 'local=zero' is not one of" in capsys.readouterr().err
