"""Saving and loading SAEs: husai/SAELens, sparsify and dictionary_learning folders, orientation, errors."""
import json
import pytest
import torch
from safetensors.torch import load_file, save_file
from husai.core import HusaiError
from husai.sae import SAEConfig, init_saes
from husai.io import (load_sae, load_saes, save_sae, stack_saes, sae_format, write_saelens_fixture,
                      write_sparsify_fixture, write_dictionary_learning_fixture)

D_IN, D_SAE = 5, 12



def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(D_SAE, D_IN, generator=g); W_dec /= W_dec.norm(dim=1, keepdim=True)
    return (torch.randn(D_IN, D_SAE, generator=g), W_dec, torch.randn(D_SAE, generator=g), torch.randn(D_IN, generator=g))


def _pre(x, W_enc, b_enc, b_dec): return (x - b_dec) @ W_enc + b_enc


def test_husai_round_trip_is_exact(tmp_path):
    sae = init_saes(SAEConfig('batchtopk', d_in=D_IN, d_sae=D_SAE, k=2), [0, 1], acts=torch.randn(30, D_IN))
    with torch.no_grad(): sae.threshold.copy_(torch.tensor([0.25, 0.5])); sae.b_enc.normal_()
    save_sae(tmp_path/'s1', sae, 1, seed=1, metrics={'fvu_eval': 0.125}, train_cfg={'lr': 1e-3})
    w = load_sae(tmp_path/'s1')
    for k, v in sae.single(1).items(): assert torch.equal(w.tensors()[k], v), k
    assert w.fmt == 'husai' and w.arch == 'batchtopk' and w.cfg['k'] == 2 and w.cfg['seed'] == 1
    assert w.cfg['metrics'] == {'fvu_eval': 0.125} and w.cfg['train_cfg'] == {'lr': 1e-3}
    raw = load_file(str(tmp_path/'s1'/'sae_weights.safetensors'))
    assert raw['W_enc'].shape == (D_IN, D_SAE) and raw['W_dec'].shape == (D_SAE, D_IN)
    x = torch.randn(4, D_IN)
    with torch.no_grad():
        torch.testing.assert_close(stack_saes([w])(x)[0], sae(x)[1])


def test_saelens_folder(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights()
    write_saelens_fixture(tmp_path/'a', W_enc, W_dec, b_enc, b_dec, architecture='topk', k=3)
    raw = load_file(str(tmp_path/'a'/'sae_weights.safetensors'))
    assert torch.equal(raw['W_dec'][7], W_dec[7])
    w = load_sae(tmp_path/'a')
    assert w.fmt == 'saelens' and w.arch == 'topk' and w.cfg['k'] == 3
    assert torch.equal(w.W_dec[7], W_dec[7]) and torch.equal(w.W_enc, W_enc)
    # an SAE that does not subtract b_dec before encoding: b_enc is folded, the function is the same
    write_saelens_fixture(tmp_path/'b', W_enc, W_dec, b_enc, b_dec, architecture='standard', apply_b_dec_to_input=False)
    w = load_sae(tmp_path/'b')
    x = torch.randn(6, D_IN)
    torch.testing.assert_close(_pre(x, w.W_enc, w.b_enc, w.b_dec), x @ W_enc + b_enc)
    assert w.arch == 'relu'


def test_sparsify_folder_orientation(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(1)
    write_sparsify_fixture(tmp_path/'layers.0', W_enc, W_dec, b_enc, b_dec, k=4)
    raw = load_file(str(tmp_path/'layers.0'/'sae.safetensors'))
    assert raw['encoder.weight'].shape == (D_SAE, D_IN)          # nn.Linear: [num_latents, d_in]
    assert torch.equal(raw['encoder.weight'][2], W_enc[:, 2])    # latent 2's encoder row
    cfg = json.loads((tmp_path/'layers.0'/'cfg.json').read_text())
    assert cfg['d_in'] == D_IN and cfg['num_latents'] == D_SAE and cfg['k'] == 4
    w = load_sae(tmp_path/'layers.0')
    assert w.fmt == 'sparsify' and w.arch == 'topk' and w.cfg['k'] == 4
    assert torch.equal(w.W_dec[5], W_dec[5]) and torch.equal(w.W_enc[:, 2], W_enc[:, 2])
    # a sparsify file written by hand in its own orientation reads back transposed
    save_file({'encoder.weight': torch.arange(D_SAE * D_IN, dtype=torch.float32).view(D_SAE, D_IN),
               'encoder.bias': torch.zeros(D_SAE), 'W_dec': torch.eye(D_SAE, D_IN), 'b_dec': torch.zeros(D_IN)},
              str(tmp_path/'layers.0'/'sae.safetensors'))
    w = load_sae(tmp_path/'layers.0')
    assert w.W_enc[1, 3] == 3 * D_IN + 1 and torch.equal(w.W_dec, torch.eye(D_SAE, D_IN))


@pytest.mark.parametrize('cls,arch', [('AutoEncoderTopK', 'topk'), ('BatchTopKSAE', 'batchtopk'),
                                      ('AutoEncoder', 'relu'), ('JumpReluAutoEncoder', 'jumprelu')])
def test_dictionary_learning_folder(tmp_path, cls, arch):
    W_enc, W_dec, b_enc, b_dec = _weights(2)
    write_dictionary_learning_fixture(tmp_path/'trainer_0', W_enc, W_dec, b_enc, b_dec, dict_class=cls,
                                      k=None if arch in ('relu', 'jumprelu') else 3)
    sd = torch.load(tmp_path/'trainer_0'/'ae.pt', weights_only=True)
    if cls != 'JumpReluAutoEncoder':
        assert sd['decoder.weight'].shape == (D_IN, D_SAE)          # nn.Linear(dict_size, activation_dim)
        assert torch.equal(sd['decoder.weight'][:, 9], W_dec[9])    # latent 9's decoder column
        assert ('bias' in sd) == (cls == 'AutoEncoder')
    w = load_sae(tmp_path/'trainer_0')
    assert w.fmt == 'dictionary_learning' and w.arch == arch
    assert torch.equal(w.W_dec[9], W_dec[9])
    x = torch.randn(6, D_IN)
    torch.testing.assert_close(_pre(x, w.W_enc, w.b_enc, w.b_dec), _pre(x, W_enc, b_enc, b_dec))
    # without config.json the class is guessed from the state dict's keys
    (tmp_path/'trainer_0'/'config.json').unlink()
    assert load_sae(tmp_path/'trainer_0').arch == ('topk' if arch == 'batchtopk' else arch)


def test_load_saes_folder_of_folders(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights()
    write_sparsify_fixture(tmp_path/'b', W_enc, W_dec, b_enc, b_dec)
    write_saelens_fixture(tmp_path/'a', W_enc, W_dec, b_enc, b_dec, k=2)
    write_dictionary_learning_fixture(tmp_path/'c', W_enc, W_dec, b_enc, b_dec, k=2)
    (tmp_path/'notes').mkdir()
    got = load_saes(tmp_path)
    assert [n for n, _ in got] == ['a', 'b', 'c'] and [w.fmt for _, w in got] == ['saelens', 'sparsify', 'dictionary_learning']
    assert [n for n, _ in load_saes(tmp_path/'b')] == ['b']


def test_errors_name_the_file(tmp_path):
    (tmp_path/'empty').mkdir()
    with pytest.raises(HusaiError, match='not an SAE folder'): load_sae(tmp_path/'empty')
    with pytest.raises(HusaiError, match='neither an SAE folder'): load_saes(tmp_path/'empty')
    with pytest.raises(HusaiError, match='no such'): load_saes(tmp_path/'missing')
    W_enc, W_dec, b_enc, b_dec = _weights()
    f = write_saelens_fixture(tmp_path/'bad', W_enc, W_dec, b_enc, b_dec, k=2)
    (f/'sae_weights.safetensors').write_bytes(b'\x00garbage')
    with pytest.raises(HusaiError, match='sae_weights.safetensors'): load_sae(f)
    save_file({'W_enc': W_enc.T.contiguous(), 'W_dec': W_dec, 'b_enc': b_enc, 'b_dec': b_dec}, str(f/'sae_weights.safetensors'))
    with pytest.raises(HusaiError, match=r'W_enc has shape \(12, 5\), expected \(5, 12\)'): load_sae(f)
    save_file({'W_enc': W_enc, 'b_dec': b_dec}, str(f/'sae_weights.safetensors'))
    with pytest.raises(HusaiError, match="missing tensors"): load_sae(f)
    d = write_dictionary_learning_fixture(tmp_path/'dl', W_enc, W_dec, b_enc, b_dec, k=2)
    (d/'ae.pt').write_bytes(b'not a pickle')
    with pytest.raises(HusaiError, match='ae.pt'): load_sae(d)
    torch.save({'encoder.weight': W_enc.T, 'decoder_bias': b_dec}, d/'ae.pt'); (d/'config.json').unlink()
    with pytest.raises(HusaiError, match='not supported'): load_sae(d)
    s = write_sparsify_fixture(tmp_path/'sp', W_enc, W_dec, b_enc, b_dec)
    (s/'cfg.json').write_text('{broken')
    with pytest.raises(HusaiError, match='cfg.json'): load_sae(s)
    assert sae_format(tmp_path/'empty') is None
