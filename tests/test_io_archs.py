"""The new architectures (issue 13) through files: husai's format and SAELens's round-trip with the same codes, a
SAELens jumprelu folder written by hand runs in husai with SAELens's formula, and train-saes -> stability works for each."""
import json
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from husai.sae import SAEConfig, ARCHITECTURES
from husai.train_sae import TrainConfig, train_saes
from husai.io import save_sae, save_saelens, load_sae, stack_saes, load_saes

X = torch.randn(400, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(2, 0.2, 8)

def trained(arch):
    kw = {'l1_coef': 0.5} if arch == 'relu' else {'k': 3}
    return train_saes(X, SAEConfig(arch, d_in=8, d_sae=16, **kw), [0, 1], TrainConfig(steps=30), progress=False).saes.eval()

@pytest.mark.parametrize('arch', sorted(ARCHITECTURES))
@pytest.mark.parametrize('writer', ['husai', 'saelens'])
def test_round_trip_gives_the_same_codes(tmp_path, arch, writer):
    s = trained(arch)
    folder = save_sae(tmp_path/'f', s, 1) if writer == 'husai' else save_saelens(tmp_path/'f', s, 1, hook_name='blocks.0.hook_resid_post')
    w = load_sae(folder)
    assert w.fmt == writer
    with torch.no_grad():
        assert torch.equal(stack_saes([w]).encode(X)[0], s.encode(X)[1])
        assert torch.allclose(stack_saes([w])(X)[0], s(X)[1], atol=1e-6)
    if writer == 'saelens':
        cfg = json.loads((folder/'cfg.json').read_text())
        want = {'batchtopk': 'jumprelu', 'matryoshka': 'jumprelu', 'jumprelu': 'jumprelu', 'relu': 'standard'}.get(arch, 'topk')
        assert cfg['architecture'] == want and 'format' not in cfg

@pytest.mark.parametrize('apply_b_dec', [True, False])
def test_a_saelens_jumprelu_folder_runs_with_saelens_formula(tmp_path, apply_b_dec):
    "A folder as SAELens writes a JumpReLU SAE (per-latent threshold); husai's codes equal relu(pre) * (pre > threshold)."
    g = torch.Generator().manual_seed(3); d, m = 8, 24
    W_enc, W_dec = torch.randn(d, m, generator=g), torch.randn(m, d, generator=g)
    b_enc, b_dec, thr = torch.randn(m, generator=g) * 0.1, torch.randn(d, generator=g) * 0.1, torch.rand(m, generator=g)
    f = tmp_path/'jr'; f.mkdir()
    save_file({'W_enc': W_enc, 'W_dec': W_dec, 'b_enc': b_enc, 'b_dec': b_dec, 'threshold': thr}, str(f/'sae_weights.safetensors'))
    (f/'cfg.json').write_text(json.dumps({'architecture': 'jumprelu', 'd_in': d, 'd_sae': m, 'dtype': 'float32', 'device': 'cpu',
                                          'apply_b_dec_to_input': apply_b_dec, 'normalize_activations': 'none',
                                          'metadata': {'hook_name': 'blocks.3.hook_resid_post'}}))
    x = torch.randn(100, d, generator=g)
    pre = (x - b_dec if apply_b_dec else x) @ W_enc + b_enc          # SAELens's encode, written out
    want = torch.relu(pre) * (pre > thr)
    sae = stack_saes([load_sae(f)])
    assert sae.cfg.arch == 'jumprelu' and sae.threshold.shape == (1, m)
    with torch.no_grad():
        assert torch.allclose(sae.encode(x)[0], want, atol=1e-5)
        assert torch.allclose(sae(x)[0], want @ W_dec + b_dec, atol=1e-4)

@pytest.mark.parametrize('arch', ['jumprelu', 'matryoshka', 'archetypal'])
def test_train_saes_cli_then_stability(tmp_path, capsys, arch):
    from husai.cli import main
    np.save(tmp_path/'acts.npy', X.numpy())
    assert main(['train-saes', str(tmp_path/'acts.npy'), '--arch', arch, '--d-sae', '16', '--k', '3', '--seeds', '0', '1', '2',
                 '--steps', '20', '--out', str(tmp_path/'run'), '--quiet']) == 0
    capsys.readouterr()
    assert [w.arch for _, w in load_saes(tmp_path/'run')] == [arch] * 3
    assert main(['stability', str(tmp_path/'run'), '--json', '--acts', str(tmp_path/'acts.npy')]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['n_seeds'] == 3 and len(r['alive']['n_alive']) == 3
