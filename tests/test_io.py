"""Saving and loading SAEs: husai/SAELens, sparsify and dictionary_learning folders, orientation, errors."""
import json
import pytest
import torch
from safetensors.torch import load_file, save_file
from husai.core import HusaiError
from husai.sae import SAEConfig, init_saes
from husai.io import load_sae, load_saes, save_sae, stack_saes, sae_format, saes_by_hookpoint, load_acts, LOADER_TABLE
from husai.testing import (write_saelens_fixture, write_sparsify_fixture, write_dictionary_learning_fixture, REAL_KEYS)

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
    # without config.json the class comes from the state dict's keys; AutoEncoderTopK and BatchTopKSAE have
    # the same keys (and different forwards), so those two are read for their directions only
    (tmp_path/'trainer_0'/'config.json').unlink()
    w = load_sae(tmp_path/'trainer_0')
    assert torch.equal(w.W_dec[9], W_dec[9])
    if arch in ('topk', 'batchtopk'): assert w.forward_refused and 'AutoEncoderTopK' in w.forward_refused
    else: assert w.arch == arch and w.forward_refused is None


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
    torch.save({'encoder.weight': W_enc.T, 'unknown_bias': b_dec}, d/'ae.pt'); (d/'config.json').unlink()
    with pytest.raises(HusaiError, match='not supported'): load_sae(d)
    s = write_sparsify_fixture(tmp_path/'sp', W_enc, W_dec, b_enc, b_dec)
    (s/'cfg.json').write_text('{broken')
    with pytest.raises(HusaiError, match='cfg.json'): load_sae(s)
    assert sae_format(tmp_path/'empty') is None


# ---- settings of the other libraries' files (issue 14): each reference below is the library's own formula

def _scaled_weights(seed=3):
    "Weights with non-unit decoder norms (as SAELens trainer checkpoints keep them)."
    W_enc, W_dec, b_enc, b_dec = _weights(seed)
    g = torch.Generator().manual_seed(seed + 100)
    return W_enc, W_dec * (torch.rand(D_SAE, 1, generator=g) * 3 + 0.2), b_enc, b_dec


def _topk_dense(h, k):
    v, i = h.topk(k, dim=-1)
    return torch.zeros_like(h).scatter(-1, i, v.relu())


def _run(w, x):
    with torch.no_grad():
        s = stack_saes([w])
        return s.encode(x)[0], s(x)[0]


def test_saelens_topk_rescale_acts_by_decoder_norm(tmp_path):
    "SAELens TopK: codes = topk((x - b_dec) W_enc + b_enc) * |W_dec| ...; x_hat = (codes / |W_dec|) W_dec + b_dec."
    W_enc, W_dec, b_enc, b_dec = _scaled_weights()
    write_saelens_fixture(tmp_path, W_enc, W_dec, b_enc, b_dec, architecture='topk', k=3, rescale_acts_by_decoder_norm=True)
    x = torch.randn(50, D_IN, generator=torch.Generator().manual_seed(0))
    n = W_dec.norm(dim=1)
    codes = _topk_dense(_pre(x, W_enc, b_enc, b_dec) * n, 3)
    out = (codes / n) @ W_dec + b_dec
    got_codes, got_out = _run(load_sae(tmp_path), x)
    torch.testing.assert_close(got_codes, codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_out, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(load_sae(tmp_path).W_dec.norm(dim=1), torch.ones(D_SAE))   # unit rows, same directions


def test_saelens_batchtopk_checkpoint_threshold_and_float_k(tmp_path):
    "A BatchTopK trainer checkpoint: the inference codes are relu(h) where relu(h) > topk_threshold (h rescaled)."
    W_enc, W_dec, b_enc, b_dec = _scaled_weights(4)
    write_saelens_fixture(tmp_path, W_enc, W_dec, b_enc, b_dec, architecture='batchtopk', k=2.5,
                          tensors={'topk_threshold': torch.tensor(1.5, dtype=torch.float64)},
                          rescale_acts_by_decoder_norm=True, topk_threshold_lr=0.01, aux_loss_coefficient=1.0)
    x = torch.randn(50, D_IN, generator=torch.Generator().manual_seed(1))
    n = W_dec.norm(dim=1)
    h = (_pre(x, W_enc, b_enc, b_dec) * n).relu()
    codes = h * (h > 1.5)
    got_codes, got_out = _run(load_sae(tmp_path), x)
    assert 0 < (codes > 0).sum(1).float().mean() < D_SAE / 2          # the threshold does cut
    torch.testing.assert_close(got_codes, codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_out, (codes / n) @ W_dec + b_dec, rtol=1e-5, atol=1e-5)


def test_saelens_log_threshold_is_exponentiated(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(5)
    thr = torch.rand(D_SAE, generator=torch.Generator().manual_seed(5)) + 0.1
    write_saelens_fixture(tmp_path, W_enc, W_dec, b_enc, b_dec, architecture='jumprelu', tensors={'log_threshold': thr.log()})
    w = load_sae(tmp_path)
    assert w.arch == 'jumprelu'
    torch.testing.assert_close(w.threshold, thr)


def test_saelens_normalize_activations(tmp_path):
    "Per-sample normalisations are refused (directions kept); a saved scaling factor is folded in exactly."
    from husai.stability import pairwise
    W_enc, W_dec, b_enc, b_dec = _weights(6)
    for norm in ('layer_norm', 'constant_norm_rescale'):
        for s in (0, 1):
            write_saelens_fixture(tmp_path/norm/f's{s}', W_enc + 0.1 * s, W_dec, b_enc, b_dec, architecture='standard',
                                  normalize_activations=norm)
        ws = [w for _, w in load_saes(tmp_path/norm)]
        assert norm in ws[0].forward_refused
        with pytest.raises(HusaiError, match=norm): stack_saes(ws)
        assert pairwise(ws, 'mmcs').values[0] == pytest.approx(1.0)    # the weight-based metrics still work
        assert norm in load_sae(save_sae(tmp_path/f'{norm}-husai', ws[0])).forward_refused   # kept when husai saves it
    f = write_saelens_fixture(tmp_path/'scaled', W_enc, W_dec, b_enc, b_dec, architecture='standard',
                              normalize_activations='expected_average_only_in')
    assert 'expected_average_only_in' in load_sae(f).forward_refused            # the scale is unknown
    (f/'activation_scaler.json').write_text(json.dumps({'scaling_factor': 0.25, 'has_whitening': False}))
    x = torch.randn(20, D_IN, generator=torch.Generator().manual_seed(6))
    out = (_pre(0.25 * x, W_enc, b_enc, b_dec).relu() @ W_dec + b_dec) / 0.25  # the SAE sees s x; its output is unscaled
    torch.testing.assert_close(_run(load_sae(f), x)[1], out, rtol=1e-5, atol=1e-5)


def test_saelens_transcoder_and_bf16_fold(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(7)
    # a transcoder that writes 3 dims: read (fold after the shape check), forward refused
    write_saelens_fixture(tmp_path/'tc', W_enc, W_dec[:, :3], b_enc, b_dec[:3], architecture='transcoder',
                          apply_b_dec_to_input=False)
    w = load_sae(tmp_path/'tc')
    assert (w.d_in, w.d_out) == (D_IN, 3) and 'transcoder' in w.forward_refused
    with pytest.raises(HusaiError, match='transcoder'): stack_saes([w])
    back = load_sae(save_sae(tmp_path/'tc-husai', w))
    assert (back.d_in, back.d_out) == (D_IN, 3) and torch.equal(back.W_dec, w.W_dec) and back.forward_refused
    # bf16 without b_dec in the input: the fold in float64 keeps float32 accuracy
    big = b_dec * 40
    write_saelens_fixture(tmp_path/'bf16', W_enc, W_dec, b_enc, big, architecture='standard', apply_b_dec_to_input=False,
                          dtype=torch.bfloat16)
    t = {k: v.double() for k, v in load_file(str(tmp_path/'bf16'/'sae_weights.safetensors')).items()}
    x = torch.randn(40, D_IN, generator=torch.Generator().manual_seed(7))
    ref = (x.double() @ t['W_enc'] + t['b_enc']).relu() @ t['W_dec'] + t['b_dec']
    err = float(((_run(load_sae(tmp_path/'bf16'), x)[1].double() - ref).abs().max() / ref.abs().max()))
    assert err < 1e-5, err


def test_sparsify_transcode_and_skip_connection(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(8)
    x = torch.randn(30, D_IN, generator=torch.Generator().manual_seed(8))
    write_sparsify_fixture(tmp_path/'layers.0', W_enc, W_dec, b_enc, b_dec, k=3, transcode=True)
    codes = _topk_dense(x @ W_enc + b_enc, 3)                       # a transcoder does not subtract b_dec
    got_codes, got_out = _run(load_sae(tmp_path/'layers.0'), x)
    torch.testing.assert_close(got_codes, codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_out, codes @ W_dec + b_dec, rtol=1e-5, atol=1e-5)
    W_skip = torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(9))
    write_sparsify_fixture(tmp_path/'layers.1', W_enc, W_dec, b_enc, b_dec, k=3, W_skip=W_skip)
    assert load_file(str(tmp_path/'layers.1'/'sae.safetensors'))['W_skip'].equal(W_skip.T)   # sparsify applies x W_skip^T
    w = load_sae(tmp_path/'layers.1')
    assert 'skip connection' in w.forward_refused and torch.equal(w.extra['W_skip'], W_skip)
    with pytest.raises(HusaiError, match='skip connection'): stack_saes([w])


def test_dictionary_learning_matryoshka_and_gated(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(10)
    x = torch.randn(30, D_IN, generator=torch.Generator().manual_seed(10))
    for config in (True, False):
        f = write_dictionary_learning_fixture(tmp_path/f'm{config}', W_enc, W_dec, b_enc, b_dec, dict_class='MatryoshkaBatchTopKSAE',
                                              k=3, threshold=0.5, group_sizes=[4, 8], config=config)
        assert set(torch.load(f/'ae.pt', weights_only=True)) == {'W_enc', 'b_enc', 'W_dec', 'b_dec', 'k', 'threshold', 'group_sizes'}
        w = load_sae(f)
        assert w.arch == 'matryoshka_batchtopk'
        r = _pre(x, W_enc, b_enc, b_dec).relu(); codes = r * (r > 0.5)   # its inference forward (all groups active)
        got_codes, got_out = _run(w, x)
        torch.testing.assert_close(got_codes, codes, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_out, codes @ W_dec + b_dec, rtol=1e-5, atol=1e-5)
    g = torch.Generator().manual_seed(11)
    b_mag, r_mag = torch.randn(D_SAE, generator=g), 0.3 * torch.randn(D_SAE, generator=g)
    for config in (True, False):
        f = write_dictionary_learning_fixture(tmp_path/f'g{config}', W_enc, W_dec, b_enc, b_dec, dict_class='GatedAutoEncoder',
                                              b_mag=b_mag, r_mag=r_mag, config=config)
        w = load_sae(f)
        assert w.arch == 'gated' and torch.equal(w.W_dec, W_dec) and torch.equal(w.W_enc, W_enc)
        assert torch.equal(w.extra['b_mag'], b_mag) and torch.equal(w.b_enc, b_enc)
        with pytest.raises(HusaiError, match="'gated' cannot run in husai yet"): stack_saes([w])


def test_saelens_gated_is_read(tmp_path):
    W_enc, W_dec, b_enc, b_dec = _weights(12)
    g = torch.Generator().manual_seed(12)
    extra = {'b_gate': b_enc, 'b_mag': torch.randn(D_SAE, generator=g), 'r_mag': 0.2 * torch.randn(D_SAE, generator=g)}
    write_saelens_fixture(tmp_path, W_enc, W_dec, None, b_dec, architecture='gated', tensors=extra, apply_b_dec_to_input=False)
    assert 'b_enc' not in load_file(str(tmp_path/'sae_weights.safetensors'))
    w = load_sae(tmp_path)
    assert w.arch == 'gated' and torch.equal(w.W_dec, W_dec)
    # apply_b_dec_to_input=False: both biases folded, so the gate and the magnitude compute SAELens's x W + b
    x = torch.randn(9, D_IN, generator=g)
    torch.testing.assert_close((x - w.b_dec) @ w.W_enc + w.extra['b_gate'], x @ W_enc + b_enc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((x - w.b_dec) @ (w.W_enc * w.extra['r_mag'].exp()) + w.extra['b_mag'],
                               x @ (W_enc * extra['r_mag'].exp()) + extra['b_mag'], rtol=1e-5, atol=1e-5)
    with pytest.raises(HusaiError, match='gated'): stack_saes([w])
    back = load_sae(save_sae(tmp_path/'husai', w))                  # saved by husai and read back: the same SAE
    assert back.arch == 'gated' and all(torch.equal(back.tensors()[k], v) for k, v in w.tensors().items())


def test_sparsify_hookpoints_are_not_seeds(tmp_path, capsys):
    from husai.cli import main
    W_enc, W_dec, b_enc, b_dec = _weights(13)
    for h in ('layers.0', 'layers.1'): write_sparsify_fixture(tmp_path/'run'/h, W_enc, W_dec, b_enc, b_dec, k=3)
    with pytest.raises(HusaiError, match=r'2 hookpoints \(layers\.0: layers\.0; layers\.1: layers\.1\)'): load_saes(tmp_path/'run')
    assert main(['stability', str(tmp_path/'run')]) == 2 and 'hookpoints' in capsys.readouterr().err
    # several init seeds: <hookpoint>/seed<N>/, as sparsify's trainer saves them
    for h in ('layers.0', 'layers.1'):
        for s in (0, 1): write_sparsify_fixture(tmp_path/'seeds'/h/f'seed{s}', W_enc + s, W_dec, b_enc, b_dec, k=3)
    assert [n for n, _ in load_saes(tmp_path/'seeds'/'layers.0')] == ['seed0', 'seed1']
    with pytest.raises(HusaiError, match='hookpoints'): load_saes(tmp_path/'seeds')
    groups = saes_by_hookpoint(tmp_path/'seeds')
    assert {h: [n for n, _ in g] for h, g in groups.items()} == {'layers.0': ['layers.0/seed0', 'layers.0/seed1'],
                                                                 'layers.1': ['layers.1/seed0', 'layers.1/seed1']}


def test_loader_table_names_every_setting():
    "Every config key the libraries write (recorded in husai.testing.REAL_KEYS) has a row in the loader table."
    rows = {fmt: {k for key in t for k in key.split(', ')} for fmt, t in LOADER_TABLE.items()}
    for group, keys in REAL_KEYS.items():
        fmt = group.split('_')[0] if group.startswith('saelens') else group
        assert keys <= rows[fmt], (group, keys - rows[fmt])


# ---- bad input (issue 14): one clear line, never torch's traceback or its advice to unpickle

def test_big_endian_npy_and_pickled_files(tmp_path):
    import numpy as np
    a = np.arange(12, dtype='>f4').reshape(4, 3)
    np.save(tmp_path/'big.npy', a)
    got = load_acts(tmp_path/'big.npy')
    assert got.dtype == torch.float32 and torch.equal(got, torch.arange(12.).reshape(4, 3))
    torch.save({'acts': torch.ones(3, 2), 'meta': np.zeros(2)}, tmp_path/'obj.pt')
    for f in (lambda: load_acts(tmp_path/'obj.pt'), ):
        with pytest.raises(HusaiError) as e: f()
        assert 'will not unpickle' in str(e.value) and '\n' not in str(e.value) and 'weights_only' not in str(e.value)
    d = write_dictionary_learning_fixture(tmp_path/'dl', *_weights(), k=2)
    torch.save({'encoder.weight': torch.zeros(D_SAE, D_IN), 'step': np.int64(3)}, d/'ae.pt')
    with pytest.raises(HusaiError) as e: load_sae(d)
    assert 'ae.pt' in str(e.value) and 'will not unpickle' in str(e.value) and '\n' not in str(e.value)


def test_fixture_writers_write_the_real_tensor_names(tmp_path):
    "The fixture writers' files have exactly the tensor names (and buffer dtypes) the libraries' own files have."
    from husai.testing import REAL_STATE_KEYS
    W_enc, W_dec, b_enc, b_dec = _weights(14)
    extra = dict(b_mag=torch.zeros(D_SAE), r_mag=torch.zeros(D_SAE))
    for cls, keys in REAL_STATE_KEYS['dictionary_learning'].items():
        f = write_dictionary_learning_fixture(tmp_path/cls, W_enc, W_dec, b_enc, b_dec, dict_class=cls, k=3, group_sizes=[4, 8], **extra)
        sd = torch.load(f/'ae.pt', weights_only=True)
        assert set(sd) == keys, cls
        if 'k' in sd: assert sd['k'].dtype == torch.int32 and sd['threshold'].shape == ()
    lens = {'gated': dict(b_enc=None, tensors={'b_gate': b_enc, 'b_mag': b_enc.clone(), 'r_mag': b_enc.clone()}),
            'jumprelu': dict(threshold=torch.zeros(D_SAE)), 'skip_transcoder': dict(tensors={'W_skip': torch.zeros(D_IN, D_IN)}),
            'batchtopk': dict(tensors={'topk_threshold': torch.tensor(0.)})}
    for arch, keys in REAL_STATE_KEYS['saelens'].items():
        kw = {'b_enc': b_enc, **lens.get(arch, {})}
        f = write_saelens_fixture(tmp_path/arch, W_enc, W_dec, kw.pop('b_enc'), b_dec, architecture=arch, k=3, **kw)
        assert set(load_file(str(f/'sae_weights.safetensors'))) == keys, arch
    f = write_sparsify_fixture(tmp_path/'sp', W_enc, W_dec, b_enc, b_dec, W_skip=torch.zeros(D_IN, D_IN))
    assert set(load_file(str(f/'sae.safetensors'))) == REAL_STATE_KEYS['sparsify']['skip_connection']
