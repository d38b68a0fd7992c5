"""`husai stability` on folders written by husai and by the fixture writers of SAELens, sparsify and dictionary_learning."""
import json, math, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from husai.cli import main
from husai.io import SAEWeights, save_sae
from husai.testing import write_saelens_fixture, write_sparsify_fixture, write_dictionary_learning_fixture
from husai.stability import pairwise

def weights(seed, d_in=12, d_sae=24, base=None):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_sae, d_in, generator=g) if base is None else base + 0.2 * torch.randn(d_sae, d_in, generator=g)
    W = W / W.norm(dim=1, keepdim=True)
    E = W.T + 0.1 * torch.randn(d_in, d_sae, generator=g)
    return SAEWeights(E, W, torch.randn(d_sae, generator=g), torch.randn(d_in, generator=g),
                      cfg={'architecture': 'topk', 'k': 3})

def run(capsys, *args):
    code = main(['stability', *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err

@pytest.fixture
def seed_folder(tmp_path):
    base = torch.randn(24, 12, generator=torch.Generator().manual_seed(99))
    ws = [weights(s, base=base) for s in range(4)]
    for s, w in enumerate(ws): save_sae(tmp_path/'run'/f'seed{s}', w, seed=s)
    return tmp_path/'run', ws

def test_json_over_a_folder_of_seed_folders(capsys, seed_folder):
    folder, ws = seed_folder
    code, out, err = run(capsys, folder, '--json', '--n-boot', 200)
    assert code == 0, err
    r = json.loads(out)
    assert r['n_seeds'] == 4 and r['d_in'] == 12 and r['d_sae'] == 24 and len(r['pairs']) == 6
    assert {p['a'] for p in r['pairs']} | {p['b'] for p in r['pairs']} == {f'seed{s}' for s in range(4)}
    for m in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        direct = pairwise(ws, m).values
        assert [p[m] for p in r['pairs']] == pytest.approx(list(direct), abs=1e-6)
        s = r['summary'][m]
        assert s['mean'] == pytest.approx(direct.mean(), abs=1e-6) and s['ci_low'] <= s['mean'] <= s['ci_high']
        assert 0 <= r['baselines']['isotropic'][m] < s['mean']
    assert r['baselines']['isotropic_exact']['mmcs'] == pytest.approx(r['baselines']['isotropic']['mmcs'], abs=0.05)

def test_same_sae_in_every_format_is_identical(capsys, tmp_path):
    "One SAE written as SAELens, sparsify and dictionary_learning: read back in husai orientation, all metrics are 1."
    w = weights(5)
    t = dict(W_enc=w.W_enc, W_dec=w.W_dec, b_enc=w.b_enc, b_dec=w.b_dec)
    dirs = [write_saelens_fixture(tmp_path/'saelens', **t, k=3), write_sparsify_fixture(tmp_path/'sparsify', **t, k=3),
            write_dictionary_learning_fixture(tmp_path/'dl', **t, k=3), save_sae(tmp_path/'husai', w)]
    code, out, err = run(capsys, *dirs, '--json', '--n-boot', 100)
    assert code == 0, err
    r = json.loads(out)
    assert r['n_seeds'] == 4
    for p in r['pairs']:
        assert p['mmcs'] == pytest.approx(1, abs=1e-6) and p['hungarian_mcc'] == pytest.approx(1, abs=1e-6)
        assert p['shared_fraction'] == 1.0

def test_readable_table(capsys, seed_folder):
    code, out, err = run(capsys, seed_folder[0], '--n-boot', 100)
    assert code == 0, err
    for word in ('mmcs', 'hungarian_mcc', 'shared_fraction', 'isotropic', 'seed0', '95% CI', '4 seeds'):
        assert word in out

def test_two_seeds_give_null_interval(capsys, tmp_path):
    for s in range(2): save_sae(tmp_path/f's{s}', weights(s))
    code, out, err = run(capsys, tmp_path/'s0', tmp_path/'s1', '--json')
    assert code == 0, err
    r = json.loads(out)
    assert r['summary']['mmcs']['ci_low'] is None and r['n_seeds'] == 2

def test_errors_exit_2(capsys, tmp_path, seed_folder):
    save_sae(tmp_path/'a', weights(0, d_in=12)); save_sae(tmp_path/'b', weights(1, d_in=10))
    code, _, err = run(capsys, tmp_path/'a', tmp_path/'b')
    assert code == 2 and 'd_in' in err
    save_sae(tmp_path/'c', weights(2, d_sae=30))
    code, _, err = run(capsys, tmp_path/'a', tmp_path/'c')
    assert code == 2 and 'd_sae' in err
    code, _, err = run(capsys, tmp_path/'a')
    assert code == 2 and 'at least two' in err
    code, _, err = run(capsys, tmp_path/'missing', tmp_path/'a')
    assert code == 2 and 'missing' in err
    bad = tmp_path/'bad'; save_sae(bad, weights(3)); (bad/'sae_weights.safetensors').write_bytes(b'not safetensors')
    code, _, err = run(capsys, bad, tmp_path/'a')
    assert code == 2 and 'bad' in err
    code, _, err = run(capsys, seed_folder[0], '--threshold', '1.5')
    assert code == 2 and 'threshold' in err

def test_console_script(seed_folder):
    exe = Path(sys.executable).parent/'husai'
    if not exe.exists(): pytest.skip('the husai console script is not installed (pip install -e .)')
    r = subprocess.run([str(exe), 'stability', str(seed_folder[0]), '--json', '--n-boot', '50'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['n_seeds'] == 4

def test_on_folders_written_by_train_saes(capsys, tmp_path):
    "`husai train-saes` writes OUT/seed_<s>/; `husai stability OUT` reads them as its seeds."
    from husai.synthetic import SyntheticConfig, make_synthetic
    acts = tmp_path/'acts.npy'
    np.save(acts, make_synthetic(SyntheticConfig(n_samples=2000, seed=0)).X.numpy())
    code = main(['train-saes', str(acts), '--arch', 'topk', '--d-sae', '32', '--k', '3', '--seeds', '0', '1', '2',
                 '--steps', '30', '--out', str(tmp_path/'run'), '--quiet'])
    capsys.readouterr()
    assert code == 0
    code, out, err = run(capsys, tmp_path/'run', '--json', '--n-boot', 100)
    assert code == 0, err
    r = json.loads(out)
    assert r['n_seeds'] == 3 and r['d_in'] == 16 and r['d_sae'] == 32
    assert sorted({p['a'] for p in r['pairs']} | {p['b'] for p in r['pairs']}) == ['seed_0', 'seed_1', 'seed_2']
