"""Batched multi-seed SAE training: equality with single-seed runs, metrics, bad input, cache, CLI."""
import json
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.sae import ARCHITECTURES, SAEConfig
from husai.train_sae import TrainConfig, train_saes, split_acts, evaluate, lr_factor, check_acts
from husai.io import load_acts
from husai.cli import main


def _sparse_data(n=800, d=12, n_atoms=24, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_atoms, d, generator=g); D /= D.norm(dim=1, keepdim=True)
    idx = torch.rand(n, n_atoms, generator=g).topk(k, dim=1).indices
    c = torch.zeros(n, n_atoms).scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)
    return c @ D + 0.01 * torch.randn(n, d, generator=g)



ACTS = _sparse_data()


@pytest.mark.parametrize('arch', sorted(ARCHITECTURES))
@pytest.mark.parametrize('order', ['shared', 'per_seed'])
def test_batched_equals_single(arch, order):
    cfg = SAEConfig(arch, d_sae=32, k=3, l1_coef=1e-2, dead_after=300)   # dead_after small: AuxK fires
    tc = TrainConfig(steps=40, batch_size=50, data_order=order, log_every=10)
    many = train_saes(ACTS, cfg, [3, 5, 8], tc, progress=False)
    one = train_saes(ACTS, cfg, [5], tc, progress=False)
    for name, p in many.saes.state_dict().items():
        if arch == 'batchtopk':   # its code width is the widest row of any seed: equal up to float rounding
            torch.testing.assert_close(p[1], one.saes.state_dict()[name][0], atol=2e-5, rtol=1e-4, msg=name)
        else: assert torch.equal(p[1], one.saes.state_dict()[name][0]), name   # bit for bit
    for key in ('fvu_eval', 'fvu_train', 'l0', 'dead_frac'):
        if arch == 'batchtopk': assert many.metrics[5][key] == pytest.approx(one.metrics[5][key], rel=1e-3, abs=1e-4), key
        else: assert many.metrics[5][key] == one.metrics[5][key], key


def test_data_order_per_seed_differs_from_shared():
    cfg = SAEConfig('topk', d_sae=32, k=3)
    a = train_saes(ACTS, cfg, [0], TrainConfig(steps=20, batch_size=50), progress=False)
    b = train_saes(ACTS, cfg, [0], TrainConfig(steps=20, batch_size=50, data_order='per_seed'), progress=False)
    assert not torch.allclose(a.saes.W_dec, b.saes.W_dec)


def test_metrics_match_naive_formulas_and_learning_happens():
    cfg = SAEConfig('topk', d_sae=32, k=2)
    res = train_saes(ACTS, cfg, [0, 1], TrainConfig(steps=300, batch_size=100, lr=3e-3), progress=False)
    train, held = split_acts(ACTS, 0.1, 0)
    sae = res.saes
    with torch.no_grad():
        for i, s in enumerate([0, 1]):
            W_enc, W_dec, b_enc, b_dec = sae.W_enc[i], sae.W_dec[i], sae.b_enc[i], sae.b_dec[i]
            pre = (held - b_dec) @ W_enc + b_enc
            v, j = pre.topk(2, dim=1)
            z = torch.zeros_like(pre).scatter(1, j, torch.relu(v))
            xh = z @ W_dec + b_dec
            fvu = ((held - xh) ** 2).sum() / ((held - held.mean(0)) ** 2).sum()
            assert res.metrics[s]['fvu_eval'] == pytest.approx(float(fvu), rel=1e-4)
            assert res.metrics[s]['l0'] == pytest.approx(float((z > 0).float().sum(1).mean()), rel=1e-6)
            assert res.metrics[s]['dead_frac'] == pytest.approx(float(((z > 0).sum(0) == 0).float().mean()))
            assert res.metrics[s]['fvu_eval'] < 0.35   # 2-sparse data, k=2: most variance is explained
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(2, 32))   # decoder rows stay unit norm
    h = res.history
    assert len(h['step']) == 20 and len(h['fvu_eval'][0]) == 2 and h['fvu_eval'][-1][0] < h['fvu_eval'][0][0]


def test_song_setting_is_expressible():
    tc = TrainConfig(lr=1e-4, batch_size=None, steps=30_000, lr_warmup_steps=0, lr_decay='none',
                     l1_warmup_steps=0, eval_frac=0).resolve(50_000, 32)
    assert tc.batch_size == 50_000 and tc.lr == 1e-4
    assert {lr_factor(t, tc) for t in (0, 100, 29_999)} == {1.0}
    res = train_saes(ACTS, SAEConfig('relu', d_sae=16, l1_coef=1e-2, b_dec_init='zeros'), [0],
                     TrainConfig(batch_size=None, steps=5, eval_frac=0, lr_decay='none', lr_warmup_steps=0), progress=False)
    assert res.metrics[0]['fvu_eval'] is None and res.train_cfg.batch_size == len(ACTS)


@pytest.mark.parametrize('bad,msg', [
    (torch.tensor([[1., float('nan')], [0., 1.], [float('inf'), 0.], [1., 1.]]), '2 of 4 rows'),
    (torch.zeros(3, 4, 2), 'rank 2'),
    (torch.zeros(5, 4, dtype=torch.int64), 'floating'),
    (np.zeros((5, 4), dtype=np.int32), 'floating'),
    (torch.zeros(0, 4), 'empty'),
])
def test_bad_activations(bad, msg):
    with pytest.raises(HusaiError, match=msg): train_saes(bad, SAEConfig('topk', d_sae=8, k=2), [0], progress=False)


@pytest.mark.parametrize('cfg,seeds,msg', [
    (SAEConfig('topk', d_sae=8, k=8), [0], 'k < d_sae'),
    (SAEConfig('topk', d_sae=0, k=1), [0], 'd_sae'),
    (SAEConfig('topk', d_sae=8, k=2), [1, 2, 1], 'repeated'),
    (SAEConfig('topk', d_sae=8, k=2), [], 'empty'),
    (SAEConfig('topk', d_in=7, d_sae=8, k=2), [0], 'width 12'),
])
def test_bad_config(cfg, seeds, msg):
    with pytest.raises(HusaiError, match=msg): train_saes(ACTS, cfg, seeds, progress=False)


def test_cache_and_checkpoints(tmp_path):
    cfg = SAEConfig('batchtopk', d_sae=16, k=2)
    tc = TrainConfig(steps=30, batch_size=64, checkpoint_every=10)
    a = train_saes(ACTS, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)
    assert sorted(a.checkpoints) == [0, 10, 20, 30]
    torch.testing.assert_close(a.checkpoints[30]['W_dec'], a.saes.W_dec.detach())
    files = sorted(p.name for p in (a.cache_path/'checkpoints').iterdir())
    assert files == [f'step_{s:08d}.safetensors' for s in (0, 10, 20, 30)]
    b = train_saes(ACTS, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)
    assert b.cache_path == a.cache_path
    for k, v in a.saes.state_dict().items(): assert torch.equal(v, b.saes.state_dict()[k])
    assert b.metrics == a.metrics and sorted(b.checkpoints) == [0, 10, 20, 30]
    c = train_saes(ACTS * 2, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)
    assert c.cache_path != a.cache_path   # other data, other key


def _train_cached(root):
    from husai.sae import SAEConfig
    from husai.train_sae import TrainConfig, train_saes
    res = train_saes(ACTS, SAEConfig('topk', d_sae=32, k=3), [0, 1], TrainConfig(steps=3000, batch_size=50),
                     progress=False, cache=True, cache_root=root)
    return {k: v.numpy() for k, v in res.saes.state_dict().items()}, (res.cache_path/'result.json').stat().st_mtime_ns

def test_two_processes_train_cached_saes_once(tmp_path):
    # two processes ask for the same cached SAEs at once: the second waits for the first and reads its files
    # (were both to train, each would write result.json and see its own write time)
    import multiprocessing as mp
    with mp.get_context('spawn').Pool(2) as pool: (sa, ta), (sb, tb) = pool.map(_train_cached, [tmp_path, tmp_path])
    assert ta == tb
    for k in sa: assert np.array_equal(sa[k], sb[k])


@pytest.mark.parametrize('suffix', ['.npy', '.pt', '.safetensors'])
def test_cli_train_saes(tmp_path, suffix, capsys):
    f = tmp_path/f'acts{suffix}'
    if suffix == '.npy': np.save(f, ACTS.numpy())
    elif suffix == '.pt': torch.save(ACTS, f)
    else:
        from safetensors.torch import save_file
        save_file({'acts': ACTS}, str(f))
    out = tmp_path/'run'
    rc = main(['train-saes', str(f), '--arch', 'topk', '--d-sae', '16', '--k', '2', '--seeds', '0', '1', '2',
               '--steps', '20', '--out', str(out), '--quiet'])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ['metrics.json', 'seed_0', 'seed_1', 'seed_2']
    m = json.loads((out/'metrics.json').read_text())
    assert sorted(m['metrics']) == ['0', '1', '2'] and 0 < m['metrics']['1']['fvu_eval'] < 2
    cfg = json.loads((out/'seed_1'/'cfg.json').read_text())
    assert cfg['architecture'] == 'topk' and cfg['k'] == 2 and cfg['seed'] == 1 and cfg['d_in'] == 12
    # an existing output is not overwritten without --force
    assert main(['train-saes', str(f), '--d-sae', '16', '--k', '2', '--steps', '5', '--out', str(out)]) == 2
    assert 'exists' in capsys.readouterr().err


def test_cli_bad_input(tmp_path, capsys):
    bad = ACTS.clone(); bad[3, 2] = float('nan')
    np.save(tmp_path/'nan.npy', bad.numpy())
    assert main(['train-saes', str(tmp_path/'nan.npy'), '--k', '2', '--d-sae', '8', '--out', str(tmp_path/'o')]) == 2
    assert '1 of 800 rows' in capsys.readouterr().err
    assert not (tmp_path/'o').exists()   # nothing written
    (tmp_path/'x.csv').write_text('1,2')
    assert main(['train-saes', str(tmp_path/'x.csv'), '--k', '2', '--out', str(tmp_path/'o')]) == 2
    assert main(['train-saes', str(tmp_path/'nan.npy'), '--seeds', '1', '1', '--k', '2', '--out', str(tmp_path/'o')]) == 2


def test_cli_from_model_run(tmp_path):
    grok = pytest.importorskip('husai.grokking')
    cfg = grok.GrokConfig(p=11, train_frac=0.5, d_model=16, n_heads=2, d_head=8, d_mlp=32, steps=3,
                          log_every=1, checkpoint_every=3)
    run = grok.train_grokking(cfg, out=tmp_path/'model', progress=False, cache=False)
    acts = load_acts(run, site='resid_post', layer=0)
    assert acts.shape == (121, 16)
    out = tmp_path/'saes'
    assert main(['train-saes', str(run), '--site', 'mlp_hidden', '--layer', '0', '--d-sae', '8', '--k', '2',
                 '--seeds', '0', '1', '--steps', '5', '--out', str(out), '--quiet']) == 0
    assert json.loads((out/'seed_0'/'cfg.json').read_text())['d_in'] == 32
    with pytest.raises(HusaiError, match='--site'): load_acts(run)


# --- issue 14: hyper-parameters, divergence, degenerate data, memory, resume, cache integrity ---

@pytest.mark.parametrize('tc,cfg,msg', [
    (dict(lr=float('inf')), {}, 'lr must be a finite number'),
    (dict(lr=float('nan')), {}, 'lr must be a finite number'),
    (dict(epochs=float('inf')), {}, 'epochs must be a finite number'),
    (dict(epochs=1e15), {}, 'more than 1,000,000,000'),
    (dict(eval_frac=float('nan')), {}, 'eval_frac'),
    (dict(betas=(0.9, 1.5)), {}, 'betas'),
    ({}, dict(arch='relu', l1_coef=float('nan')), 'finite l1_coef'),
    ({}, dict(arch='relu', l1_coef=float('inf')), 'finite l1_coef'),
    ({}, dict(aux_coef=float('inf')), 'aux_coef'),
])
def test_hyperparameters_are_finite_and_in_range(tc, cfg, msg):
    # before: --lr inf and --l1-coef nan|inf trained NaN SAEs without a word; --epochs inf raised OverflowError
    with pytest.raises(HusaiError, match=msg):
        train_saes(ACTS, SAEConfig(**{'arch': 'topk', 'd_sae': 16, 'k': 2, **cfg}), [0], TrainConfig(batch_size=50, **tc), progress=False)


def test_huge_activations_are_refused():
    with pytest.raises(HusaiError, match='as large as 1e[+]30 overflow float32'):
        train_saes(torch.full((40, 6), 1e30) * torch.rand(40, 6).round(), SAEConfig('topk', d_sae=16, k=2), [0], TrainConfig(steps=5), progress=False)


def test_divergence_stops_naming_the_step_and_caches_nothing(tmp_path):
    # a finite but absurd learning rate: the loss overflows at step 2; before, NaN SAEs were returned and cached
    with pytest.raises(HusaiError, match=r'not finite at step 2 of 20 .*Nothing was saved or cached'):
        train_saes(ACTS, SAEConfig('topk', d_sae=16, k=2), [0, 1], TrainConfig(steps=20, batch_size=50, lr=1e30),
                   progress=False, cache=True, cache_root=tmp_path)
    assert not list(tmp_path.rglob('result.json'))


def test_no_variance_no_fvu():
    # one row with eval_frac 0 gave fvu 4.5e25 (the variance was floored at 1e-30): now refused, and evaluate says NaN
    with pytest.raises(HusaiError, match='do not vary'):
        train_saes(ACTS[:1], SAEConfig('topk', d_sae=16, k=2), [0], TrainConfig(steps=5, eval_frac=0), progress=False)
    res = train_saes(ACTS, SAEConfig('topk', d_sae=16, k=2), [0], TrainConfig(steps=5, batch_size=50), progress=False)
    assert all(np.isnan(evaluate(res.saes, ACTS[:1])['fvu'])) and all(np.isnan(evaluate(res.saes, ACTS[:1].repeat(5, 1))['fvu']))


def test_memory_is_estimated_before_allocating(tmp_path, capsys):
    with pytest.raises(HusaiError, match=r'needs about [\d,.]+ GiB of memory on cpu'):
        train_saes(ACTS, SAEConfig('topk', d_sae=2_000_000_000, k=32), [0, 1, 2, 3, 4], progress=False)
    np.save(tmp_path/'a.npy', ACTS.numpy())
    assert main(['train-saes', str(tmp_path/'a.npy'), '--d-sae', '2000000000', '--k', '32', '--out', str(tmp_path/'o')]) == 2
    err = capsys.readouterr().err
    assert 'needs about' in err and len(err.strip().splitlines()) == 1


def _count_adam_steps(monkeypatch):
    calls = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, 'step', lambda self, *a, **k: (calls.append(1), step(self, *a, **k))[1])
    return calls


def _same_result(a, b):
    for k, v in a.saes.state_dict().items(): assert torch.equal(v, b.saes.state_dict()[k]), k
    assert sorted(a.checkpoints) == sorted(b.checkpoints)
    for s in a.checkpoints:
        for k, v in a.checkpoints[s].items(): assert torch.equal(v, b.checkpoints[s][k]), (s, k)
    assert a.metrics == b.metrics and a.history == b.history


RESUME_CFG = SAEConfig('topk', d_sae=32, k=3, dead_after=300)   # AuxK fires: its clocks must survive the resume


def test_resume_after_an_interruption_is_exact(tmp_path, monkeypatch):
    from husai import train_sae
    tc = TrainConfig(steps=90, batch_size=50, log_every=20, checkpoint_every=30, data_order='per_seed')
    ref = train_saes(ACTS, RESUME_CFG, [0, 4], tc, progress=False)
    real_step = train_sae.TrainRun.step
    def failing_step(self):
        if self.t == 47: raise KeyboardInterrupt('killed')
        real_step(self)
    monkeypatch.setattr(train_sae.TrainRun, 'step', failing_step)
    with pytest.raises(KeyboardInterrupt):
        train_saes(ACTS, RESUME_CFG, [0, 4], tc, progress=False, cache=True, cache_root=tmp_path, resume_every=0)
    monkeypatch.setattr(train_sae.TrainRun, 'step', real_step)
    calls = _count_adam_steps(monkeypatch)
    res = train_saes(ACTS, RESUME_CFG, [0, 4], tc, progress=False, cache=True, cache_root=tmp_path, resume_every=0)
    assert len(calls) == 90 - 47                 # it went on from step 47 ...
    _same_result(ref, res)                       # ... to the very SAEs, checkpoints, metrics and history of an uninterrupted run
    assert not (res.cache_path/'resume.safetensors').exists()


def test_a_corrupt_resume_state_is_not_used(tmp_path, monkeypatch):
    from husai import train_sae
    tc = TrainConfig(steps=40, batch_size=50)
    ref = train_saes(ACTS, RESUME_CFG, [1], tc, progress=False)
    real_step = train_sae.TrainRun.step
    monkeypatch.setattr(train_sae.TrainRun, 'step', lambda self: (_ for _ in ()).throw(KeyboardInterrupt()) if self.t == 20 else real_step(self))
    with pytest.raises(KeyboardInterrupt):
        train_saes(ACTS, RESUME_CFG, [1], tc, progress=False, cache=True, cache_root=tmp_path, resume_every=0)
    monkeypatch.setattr(train_sae.TrainRun, 'step', real_step)
    f = next(tmp_path.rglob('resume.safetensors')); b = bytearray(f.read_bytes()); b[-5] ^= 0xFF; f.write_bytes(bytes(b))
    calls = _count_adam_steps(monkeypatch)
    with pytest.warns(UserWarning, match='cannot resume .*does not match its checksum'):
        res = train_saes(ACTS, RESUME_CFG, [1], tc, progress=False, cache=True, cache_root=tmp_path, resume_every=0)
    assert len(calls) == 40
    _same_result(ref, res)


_CHILD = r'''
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
sys.path.insert(0, sys.argv[3])
from test_train_sae import ACTS, RESUME_CFG, KILL_TC
from husai.train_sae import train_saes
train_saes(ACTS, RESUME_CFG, [0, 1, 2], KILL_TC, progress=False, cache=True, cache_root=sys.argv[1], resume_every=0.05)
'''
KILL_TC = TrainConfig(steps=600, batch_size=50, log_every=100, checkpoint_every=200)


def test_resume_after_sigkill_is_exact(tmp_path, monkeypatch):
    # `husai train-saes --cache` killed part-way used to start over; now it goes on from its last resume state
    import os, signal, subprocess, sys, time
    from pathlib import Path
    child = subprocess.Popen([sys.executable, '-c', _CHILD, str(tmp_path), str(torch.get_num_threads()), str(Path(__file__).parent)])
    try:
        deadline = time.time() + 300
        while not list(tmp_path.rglob('resume.safetensors')) and child.poll() is None and time.time() < deadline: time.sleep(0.01)
        assert child.poll() is None, 'the child ended before it could be killed'
        os.kill(child.pid, signal.SIGKILL)
    finally: child.wait()
    assert not list(tmp_path.rglob('result.json'))
    calls = _count_adam_steps(monkeypatch)
    res = train_saes(ACTS, RESUME_CFG, [0, 1, 2], KILL_TC, progress=False, cache=True, cache_root=tmp_path)
    assert 0 < len(calls) < 600
    monkeypatch.undo()
    _same_result(train_saes(ACTS, RESUME_CFG, [0, 1, 2], KILL_TC, progress=False), res)


def _flip_last_byte(f):
    b = bytearray(f.read_bytes()); b[-1] ^= 0x01; f.write_bytes(bytes(b))

@pytest.mark.parametrize('damage', ['empty result.json', 'flipped byte in saes', 'edited metric', 'flipped byte in a checkpoint',
                                    'missing checkpoint'])
def test_a_corrupt_cache_entry_is_never_served(tmp_path, damage):
    cfg, tc = SAEConfig('topk', d_sae=16, k=2), TrainConfig(steps=30, batch_size=64, checkpoint_every=10)
    a = train_saes(ACTS, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)
    folder = a.cache_path
    if damage == 'empty result.json': (folder/'result.json').write_text('{}')
    elif damage == 'flipped byte in saes': _flip_last_byte(folder/'saes.safetensors')
    elif damage == 'edited metric':
        r = json.loads((folder/'result.json').read_text()); r['metrics']['0']['fvu_eval'] = 0.001
        (folder/'result.json').write_text(json.dumps(r))
    elif damage == 'flipped byte in a checkpoint': _flip_last_byte(folder/'checkpoints'/'step_00000020.safetensors')
    else: (folder/'checkpoints'/'step_00000010.safetensors').unlink()
    with pytest.warns(UserWarning, match='corrupt and will be trained again'):
        b = train_saes(ACTS, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)
    _same_result(a, b)                                                  # retrained: the right SAEs, not the damaged ones
    c = train_saes(ACTS, cfg, [0, 1], tc, progress=False, cache=True, cache_root=tmp_path)   # and the repaired entry is served
    _same_result(a, c)
