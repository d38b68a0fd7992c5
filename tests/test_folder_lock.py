"""core.folder_lock (issue 14): a finished run in a folder we may not write to -- copied read-only, or on a
read-only mount -- is reused, with no lock and no warning; a folder we may write to is still locked.

The operating system must really refuse the writes. Root may write anywhere, so as root each check runs in a
child process that has dropped the capabilities that let root ignore file permissions (`setpriv`, util-linux)."""
import os, shutil, subprocess, sys
import numpy as np
import pytest
import torch
from husai.sae import SAEConfig
from husai.train_sae import TrainConfig, train_saes

CAPS = '-dac_override,-dac_read_search,-fowner'

def _as_unprivileged() -> list[str]:
    "Prefix for a command line that runs it bound by file permissions (empty when we are not root)."
    if os.geteuid() != 0: return []
    exe = shutil.which('setpriv')
    if not exe: pytest.skip('running as root without setpriv (util-linux), so no folder is read-only to us')
    return [exe, f'--inh-caps={CAPS}', f'--bounding-set={CAPS}', '--']

def _run(code: str, *args) -> subprocess.CompletedProcess:
    "Run `code` in a fresh python, unprivileged, with every warning an error."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([*_as_unprivileged(), sys.executable, '-W', 'error', '-c', code, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)

def _set_writable(root, writable: bool):
    for p in [root, *root.rglob('*')]:
        p.chmod(p.stat().st_mode | 0o200 if writable else p.stat().st_mode & ~0o222)

@pytest.fixture
def read_only(tmp_path):
    "A function that makes a tree read-only for the rest of the test (write bits restored after)."
    made = []
    def make(root): _set_writable(root, False); made.append(root)
    yield make
    for root in made: _set_writable(root, True)

def test_the_child_really_cannot_write(tmp_path, read_only):
    "The premise of the tests below: the child process is refused a write in a read-only folder."
    (tmp_path/'run').mkdir(); read_only(tmp_path/'run')
    r = _run("import sys; open(sys.argv[1] + '/x', 'w')", tmp_path/'run')
    assert r.returncode != 0 and 'PermissionError' in r.stderr

LOCKED = """
import sys
from pathlib import Path
from husai.core import folder_lock
with folder_lock(sys.argv[1]) as f: print((Path(f)/'result.json').read_text())
"""

def test_finished_read_only_run_is_read_without_a_lock(tmp_path, read_only):
    run = tmp_path/'cache'/'sae'/'abc'
    run.mkdir(parents=True); (run/'result.json').write_text('{"done": true}'); (run/'.lock').touch()
    read_only(tmp_path/'cache')
    r = _run(LOCKED, run)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, '{"done": true}', '')

def test_writable_folder_is_still_locked(tmp_path):
    """The same child in a folder it may write to takes the lock. The lock file stays after release (filelock >= 3.30;
    older versions deleted it, so a waiter on the old file and a newcomer on a new one could both hold 'the' lock)."""
    run = tmp_path/'run'; run.mkdir(); (run/'result.json').write_text('{}')
    r = _run(LOCKED, run)
    assert r.returncode == 0, r.stderr
    assert (run/'.lock').is_file()

def _data(n=600, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)

TRAIN = """
import sys, numpy as np, torch
from husai.sae import SAEConfig
from husai.train_sae import TrainConfig, train_saes
acts = torch.from_numpy(np.load(sys.argv[1]))
res = train_saes(acts, SAEConfig('topk', d_sae=16, k=2), [0, 1], TrainConfig(steps=20, batch_size=50),
                 progress=False, cache=True, cache_root=sys.argv[2])
np.save(sys.argv[3], res.saes.W_dec.detach().numpy())
"""

def test_train_saes_reuses_a_read_only_cache(tmp_path, read_only):
    "A user with read access only to a shared cache gets the cached SAEs, not an error or a retraining."
    acts, cache = _data(), tmp_path/'cache'
    res = train_saes(acts, SAEConfig('topk', d_sae=16, k=2), [0, 1], TrainConfig(steps=20, batch_size=50),
                     progress=False, cache=True, cache_root=cache)
    np.save(tmp_path/'acts.npy', acts.numpy())
    out = tmp_path/'out'; out.mkdir()
    read_only(cache)
    r = _run(TRAIN, tmp_path/'acts.npy', cache, out/'W_dec.npy')
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(out/'W_dec.npy'), res.saes.W_dec.detach().numpy())
