"""The installed package: `python -m build` makes a wheel that installs into a fresh venv (no nbdev,
fastcore or Jupyter there) where every module imports and the `husai` command works.

One venv per test run (module-scoped fixture), ~30 s to make, mostly installing CPU torch; each
`husai` process then spends seconds importing torch, so the checks share processes where they can."""
import configparser, json, re, shutil, subprocess, sys, time, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_ONLY = ('nbdev', 'fastcore', 'execnb', 'IPython', 'ipywidgets', 'ipykernel', 'jupyter_client', 'nbformat')

def _version():
    cp = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cp.read(ROOT/'settings.ini')
    return cp['DEFAULT']['version']

def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop('timeout', 600), **kw)

def _source_copy(dst: Path) -> Path:
    "The files of this checkout that git tracks or would track (so no build/ or caches get in)."
    files = _run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT).stdout.split('\0')
    for f in filter(None, files):
        if (ROOT/f).is_file():
            (dst/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, dst/f)
    return dst

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    pytest.importorskip('build', reason='the `build` package is a dev requirement (pip install -e ".[dev]")')
    src = _source_copy(tmp_path_factory.mktemp('src'))
    dist = tmp_path_factory.mktemp('dist')
    t0 = time.time()
    r = _run([sys.executable, '-m', 'build', '--wheel', '--outdir', str(dist), str(src)])
    if r.returncode != 0:   # an isolated build fetches setuptools; offline, build with what is installed
        r = _run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(dist), str(src)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    whl, = dist.glob('*.whl')
    print(f'wheel built in {time.time() - t0:.1f} s: {whl.name}')
    return whl

@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory):
    "A fresh venv (no system site-packages) with CPU torch and the wheel, without dev extras."
    d = tmp_path_factory.mktemp('venv')/'v'
    t0 = time.time()
    r = _run([sys.executable, '-m', 'venv', str(d)])
    assert r.returncode == 0, r.stderr
    pip = [str(d/'bin'/'python'), '-m', 'pip', 'install', '-q', '--no-compile', '--disable-pip-version-check']
    for args in (['torch==2.13.0'], [str(wheel)]):   # the CPU torch wheel first, as the README says
        r = _run(pip + args)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f'venv ready in {time.time() - t0:.1f} s')
    return d

def _py(venv, code, **kw): return _run([str(venv/'bin'/'python'), '-c', code], **kw)
def _husai(venv, *args, **kw): return _run([str(venv/'bin'/'husai'), *args], **kw)

def test_wheel_holds_the_library_and_one_version(wheel):
    assert wheel.name.startswith(f'husai-{_version()}-')
    z = zipfile.ZipFile(wheel)
    names = z.namelist()
    pkg = sorted(n for n in names if n.startswith('husai/'))
    assert pkg == sorted(f'husai/{p.name}' for p in (ROOT/'husai').glob('*.py')), pkg
    assert not any(n.startswith(('nbs/', 'tests/', 'tools/')) for n in names)
    meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    runtime = [l for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l]
    assert runtime and not any(m.lower() in l.lower() for l in runtime for m in DEV_ONLY), runtime
    assert f'\nVersion: {_version()}\n' in meta

def test_every_module_imports_without_dev_tools(venv):
    code = ('import importlib, importlib.util, pkgutil, sys, json, husai\n'
            'mods = [m.name for m in pkgutil.iter_modules(husai.__path__, "husai.")]\n'
            'for m in mods: importlib.import_module(m)\n'
            f'dev = {DEV_ONLY!r}\n'
            'print(json.dumps({"mods": mods, "version": husai.__version__,'
            ' "installed": [m for m in dev if importlib.util.find_spec(m)],'
            ' "loaded": [m for m in sys.modules if m.split(".")[0] in dev]}))')
    r = _py(venv, code, cwd='/')
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info['installed'] == [], f'the wheel pulls dev tools into a clean venv: {info["installed"]}'
    assert info['loaded'] == []
    assert info['version'] == _version()
    assert {'husai.core', 'husai.cli'} <= set(info['mods'])
    assert set(info['mods']) >= {f'husai.{p.stem}' for p in (ROOT/'husai').glob('*.py') if p.stem != '__init__'}

def test_help_version_and_usage_errors(venv, tmp_path):
    r = _husai(venv, '--help', cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ''
    assert r.stdout.startswith('usage: husai') and 'Stable AI Features' in r.stdout
    cmds = re.findall(r'^    (\S+)\s*$|^    (\S+)\s{2,}\S', r.stdout, re.M)
    cmds = [a or b for a, b in cmds]
    assert cmds, r.stdout
    code = ('import contextlib, io, json, sys\nfrom husai.cli import main\nout = {}\n'   # one process: torch loads once
            'for c in sys.argv[1:]:\n    f = io.StringIO()\n'
            '    with contextlib.redirect_stdout(f):\n        try: main([c, "--help"]); code = None\n'
            '        except SystemExit as e: code = e.code\n'
            '    out[c] = [code, f.getvalue()]\nprint(json.dumps(out))')
    h = _run([str(venv/'bin'/'python'), '-c', code, *cmds], cwd=tmp_path)
    assert h.returncode == 0, h.stderr
    for c, (code, txt) in json.loads(h.stdout).items():    # each sub-command's help reads and exits 0
        assert code == 0 and txt.startswith(f'usage: husai {c}') and len(txt.splitlines()) >= 3, (c, code, txt)
    v = _husai(venv, '--version', cwd=tmp_path)
    assert v.returncode == 0 and v.stdout.strip() == f'husai {_version()}'
    bad = _husai(venv, 'no-such-command', cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == '' and "invalid choice: 'no-such-command'" in bad.stderr
    none = _husai(venv, cwd=tmp_path)
    assert none.returncode == 2 and none.stdout == '' and 'usage: husai' in none.stderr

ACTS = '''
import numpy as np
rng = np.random.default_rng(0)
D = rng.standard_normal((24, 12)); D /= np.linalg.norm(D, axis=1, keepdims=True)
n = 3000; idx = np.argsort(rng.random((n, 24)), axis=1)[:, :3]
codes = np.zeros((n, 24)); np.put_along_axis(codes, idx, np.abs(rng.standard_normal((n, 3))), axis=1)
np.save("acts.npy", (codes @ D).astype(np.float32))
'''

MMCS = '''
import json, sys, numpy as np
from pathlib import Path
from safetensors.numpy import load_file
ds = sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir())
W = [load_file(str(d/"sae_weights.safetensors"))["W_dec"] for d in ds]
W = [w/np.linalg.norm(w, axis=1, keepdims=True) for w in W]
out = []
for i in range(len(W)):
    for j in range(i + 1, len(W)):
        C = np.abs(W[i] @ W[j].T)
        out.append(float((C.max(1).mean() + C.max(0).mean())/2))
print(json.dumps({"names": [d.name for d in ds], "mmcs": out, "shape": list(W[0].shape)}))
'''

def test_stability_command_on_trained_sae_folders(venv, tmp_path):
    "`husai train-saes` writes seed folders (husai.io's format); `husai stability` reads them."
    help_ = _husai(venv, '--help').stdout
    missing = [m for m, ok in (('husai.io (helper B: saving/loading SAE folders)', (ROOT/'husai'/'io.py').exists()),
                               ('the `husai train-saes` command (husai.io.add_cli)', 'train-saes' in help_),
                               ('the `husai stability` command (husai.report.add_cli)', 'stability' in help_)) if not ok]
    if missing: pytest.skip('not built yet: ' + '; '.join(missing))
    assert _py(venv, ACTS, cwd=tmp_path).returncode == 0
    out = tmp_path/'saes'
    r = _husai(venv, 'train-saes', 'acts.npy', '--arch', 'topk', '--d-sae', '24', '--k', '3',
               '--seeds', '0', '1', '2', '--steps', '50', '--out', str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ['seed_0', 'seed_1', 'seed_2']
    r = _husai(venv, 'stability', str(out), '--json', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert (res['n_seeds'], res['d_in'], res['d_sae']) == (3, 12, 24)
    assert len(res['pairs']) == 3
    for m in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        s = res['summary'][m]
        assert s['ci_low'] <= s['mean'] <= s['ci_high'], (m, s)
        assert m in res['baselines']['isotropic']
    ref = json.loads(_run([str(venv/'bin'/'python'), '-c', MMCS, str(out)]).stdout)
    assert ref['shape'] == [24, 12]                                          # W_dec [d_sae, d_in]
    got = sorted(p['mmcs'] for p in res['pairs'])
    assert got == pytest.approx(sorted(ref['mmcs']), abs=1e-4)               # naive mean max |cos|
    table = _husai(venv, 'stability', str(out), cwd=tmp_path)
    assert table.returncode == 0 and 'mmcs' in table.stdout
    one = _husai(venv, 'stability', str(out/'seed_0'), cwd=tmp_path)
    assert one.returncode == 2 and one.stderr.strip() and 'Traceback' not in one.stderr
