"""husai.io against the real libraries: SAEs saved by SAELens, sparsify and dictionary_learning with their own
APIs, read by husai, must compute what the library computes (codes and reconstructions), or be refused with a
reason while their directions read back exactly. Each library is optional: its tests skip when it is not
installed (none of them is a husai dependency). Run with `-s` to see the max |diff| of every comparison."""
import json, math
import pytest
import torch
from husai.io import load_sae, load_saes, stack_saes, saes_by_hookpoint
from husai.core import HusaiError
from husai.sae import ARCHITECTURES
from husai.testing import REAL_KEYS

D_IN, D_SAE, K = 8, 24, 3


def _x(n=64, d=D_IN, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 2


def naive(w, x):
    "The codes and output the loaded tensors describe, computed directly in float64 (not through husai.sae)."
    t = {k: v.double() for k, v in w.tensors().items()}; x = x.double()
    pre = (x - t['b_dec']) @ t['W_enc'] + t['b_enc'] if w.d_in == w.d_out else x @ t['W_enc'] + t['b_enc']
    a = w.arch
    if a == 'relu': z = pre.relu()
    elif a == 'topk':
        v, i = pre.topk(w.cfg['k'], dim=-1); z = torch.zeros_like(pre).scatter(-1, i, v.relu())
    elif a in ('batchtopk', 'matryoshka_batchtopk'):
        thr = -1.0 if w.threshold is None else float(w.threshold.reshape(-1)[0])
        z = pre.relu() * (pre.relu() > max(thr, 0))
    elif a == 'jumprelu': z = pre * (pre > t['threshold'])
    elif a == 'gated':
        xc = x - t['b_dec']
        z = ((xc @ t['W_enc'] + t['b_gate']) > 0) * (xc @ (t['W_enc'] * t['r_mag'].exp()) + t['b_mag']).relu()
    else: raise AssertionError(f'no naive forward for {a}')
    out = z @ t['W_dec'] + t['b_dec']
    if 'W_skip' in t: out = out + x @ t['W_skip']
    return z, out


def maxdiff(a, b):
    "max |a - b| relative to the size of b (max |b|, at least 1): float32 arithmetic gives ~1e-7."
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1))


def report(name, *diffs): print(f'\nDIFF {name}: ' + ', '.join(f'{d:.1e}' for d in diffs))   # codes, output (relative)


def same_directions(w, W_dec_theirs, W_enc_theirs=None):
    "The loaded decoder rows (and encoder columns) point where the library's do."
    cos = torch.nn.functional.cosine_similarity(w.W_dec.double(), W_dec_theirs.double(), dim=1)
    assert float((cos - 1).abs().max()) < 1e-6
    if W_enc_theirs is not None:
        cos = torch.nn.functional.cosine_similarity(w.W_enc.double(), W_enc_theirs.double(), dim=0)
        assert float((cos - 1).abs().max()) < 1e-6


def check_stack(w, x, codes, out, name, tol=1e-5):
    "husai's batched module (where the registry runs the architecture) gives the same codes and output."
    if (w.arch if w.arch in ARCHITECTURES else {'matryoshka_batchtopk': 'batchtopk'}.get(w.arch)) not in ARCHITECTURES:
        with pytest.raises(HusaiError, match='cannot run in husai yet'): stack_saes([w])
        return
    s = stack_saes([w])
    with torch.no_grad(): dc, do = maxdiff(s.encode(x.float())[0], codes), maxdiff(s(x.float())[0], out)
    report(name + ' (husai SAEs module)', dc, do)
    assert dc < tol and do < tol


# ---------------------------------------------------------------- SAELens

@pytest.fixture(scope='module')
def sl():
    return pytest.importorskip('sae_lens')


def _randomise(sae, seed=0, dec_scale=True):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 1.0))
        if dec_scale: sae.W_dec.mul_(torch.rand(sae.W_dec.shape[0], 1, generator=g) * 3 + 0.2)   # non-unit decoder norms
        if hasattr(sae, 'threshold'): sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=g) * 0.5)
    return sae


INFERENCE = [('standard', {}), ('topk', {'k': K}), ('topk', {'k': K, 'rescale_acts_by_decoder_norm': True}),
             ('jumprelu', {}), ('gated', {}), ('standard', {'apply_b_dec_to_input': False}),
             ('transcoder', {'d_out': D_IN, 'apply_b_dec_to_input': False}),
             ('jumprelu_transcoder', {'d_out': D_IN, 'apply_b_dec_to_input': False}),
             ('gated', {'apply_b_dec_to_input': False})]


@pytest.mark.parametrize('arch,kw', INFERENCE, ids=[f'{a}-{"-".join(kw)}' for a, kw in INFERENCE])
def test_saelens_inference_saes(sl, tmp_path, arch, kw):
    from sae_lens.registry import get_sae_class
    cls, ccls = get_sae_class(arch)
    sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, **kw)))
    sae.save_model(tmp_path)
    assert set(json.loads((tmp_path/'cfg.json').read_text())) <= REAL_KEYS['saelens'] | REAL_KEYS['saelens_topk'] | REAL_KEYS['saelens_transcoder']
    w, x = load_sae(tmp_path), _x()
    assert w.forward_refused is None
    with torch.no_grad(): codes, out = sae.encode(x), sae(x)
    z, o = naive(w, x)
    report(f'saelens {arch} {kw}', maxdiff(z, codes), maxdiff(o, out))
    assert maxdiff(z, codes) < 1e-5 and maxdiff(o, out) < 1e-5
    check_stack(w, x, codes, out, f'saelens {arch} {kw}')


@pytest.mark.parametrize('arch', ['skip_transcoder', 'abstopk'])
def test_saelens_refused_forward_keeps_directions(sl, tmp_path, arch):
    from sae_lens.registry import get_sae_class
    cls, ccls = get_sae_class(arch)
    kw = {'d_out': D_IN, 'apply_b_dec_to_input': False} if 'transcoder' in arch else {'k': K}
    sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, **kw)), dec_scale=False)
    sae.save_model(tmp_path)
    w = load_sae(tmp_path)
    with pytest.raises(HusaiError, match='skip connection' if 'skip' in arch else 'cannot run in husai yet'): stack_saes([w])
    same_directions(w, sae.W_dec.detach(), sae.W_enc.detach())
    if 'skip' in arch:      # the tensors still describe SAELens's function, skip connection included
        x = _x()
        with torch.no_grad(): out = sae(x)
        report(f'saelens {arch} (naive, W_skip)', maxdiff(naive(w, x)[1], out))
        assert maxdiff(naive(w, x)[1], out) < 1e-5


def test_saelens_transcoder_with_another_width(sl, tmp_path):
    from sae_lens.registry import get_sae_class
    cls, ccls = get_sae_class('transcoder')
    sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, d_out=5, apply_b_dec_to_input=False)))
    sae.save_model(tmp_path)
    w = load_sae(tmp_path)
    assert (w.d_in, w.d_out) == (D_IN, 5) and 'transcoder' in w.forward_refused
    x = _x()
    with torch.no_grad(): out = sae(x)
    report('saelens transcoder d_out 5 (naive)', maxdiff(naive(w, x)[1], out))
    assert maxdiff(naive(w, x)[1], out) < 1e-5
    with pytest.raises(HusaiError, match='transcoder'): stack_saes([w])


def test_saelens_trainer_checkpoints(sl, tmp_path):
    "TopK (rescaled codes, non-unit decoder), BatchTopK and Matryoshka (topk_threshold, float k) trainer checkpoints."
    from sae_lens.registry import get_sae_training_class, get_sae_class
    x = _x()
    for arch, kw in [('topk', {'k': K}), ('batchtopk', {'k': 2.5}), ('matryoshka_batchtopk', {'k': 2.5, 'matryoshka_widths': [8, 24]})]:
        cls, ccls = get_sae_training_class(arch)
        sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, **kw)), seed=1)
        assert sae.cfg.rescale_acts_by_decoder_norm          # SAELens's default when training
        if hasattr(sae, 'topk_threshold'): sae.topk_threshold = torch.tensor(1.7, dtype=torch.double)
        sae.save_model(tmp_path/arch)                          # what its trainer writes at a checkpoint
        keys = set(json.loads((tmp_path/arch/'cfg.json').read_text()))
        assert keys <= REAL_KEYS['saelens'] | REAL_KEYS['saelens_topk'] | REAL_KEYS['saelens_training']
        sae.save_inference_model(tmp_path/(arch + '_inf'))     # SAELens's own conversion for inference
        inf = get_sae_class(json.loads((tmp_path/(arch + '_inf')/'cfg.json').read_text())['architecture'])[0].load_from_disk(tmp_path/(arch + '_inf'))
        with torch.no_grad(): codes, out = inf.encode(x), inf(x)
        if arch == 'topk':                                     # the checkpoint's own forward agrees too
            with torch.no_grad(): assert maxdiff(sae.encode(x), codes) < 1e-5
        w = load_sae(tmp_path/arch)
        z, o = naive(w, x)
        report(f'saelens trainer checkpoint {arch}', maxdiff(z, codes), maxdiff(o, out))
        assert maxdiff(z, codes) < 1e-5 and maxdiff(o, out) < 1e-5
        check_stack(w, x, codes, out, f'saelens trainer checkpoint {arch}')


def test_saelens_log_threshold(sl, tmp_path):
    from sae_lens.registry import get_sae_training_class
    from safetensors.torch import load_file, save_file
    cls, ccls = get_sae_training_class('jumprelu')
    sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE)), seed=2)
    sae.save_model(tmp_path)
    t = load_file(str(tmp_path/'sae_weights.safetensors')); t['log_threshold'] = t.pop('threshold').log()
    save_file(t, str(tmp_path/'sae_weights.safetensors'))      # an older checkpoint
    back = cls.load_from_disk(tmp_path)                        # SAELens converts it with exp
    w, x = load_sae(tmp_path), _x()
    with torch.no_grad(): codes, out = back.encode(x), back(x)
    z, o = naive(w, x)
    report('saelens jumprelu log_threshold', maxdiff(w.threshold, back.threshold.detach()), maxdiff(z, codes), maxdiff(o, out))
    assert maxdiff(w.threshold, back.threshold.detach()) < 1e-6 and maxdiff(o, out) < 1e-5


def test_saelens_normalize_activations(sl, tmp_path):
    "Scaling and whitening statistics saved beside a checkpoint are folded as SAELens folds them; per-sample ones refused."
    from sae_lens.registry import get_sae_training_class, get_sae_class
    from sae_lens.training.activation_scaler import ActivationScaler
    x = _x()
    for norm in ('expected_average_only_in', 'covariance_whitening'):
        cls, ccls = get_sae_training_class('topk')
        sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, k=K, normalize_activations=norm)), seed=3)
        sae.save_model(tmp_path/norm)
        sc = ActivationScaler()
        data = iter([_x(256, seed=s) @ torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(9)) for s in range(8)])
        if norm == 'expected_average_only_in': sc.estimate_scaling_factor(D_IN, data, 8)
        else: sc.estimate_whitening(D_IN, data, 8)
        sc.save(str(tmp_path/norm/'activation_scaler.json'))
        if norm == 'expected_average_only_in': sae.fold_activation_norm_scaling_factor(sc.scaling_factor)
        else: sae.fold_activation_whitening(sc.whitening.mean, sc.whitening.matrix, sc.whitening.inverse_matrix)
        with torch.no_grad(): codes, out = sae.encode(x), sae(x)   # SAELens's folded SAE, on raw activations
        w = load_sae(tmp_path/norm)
        z, o = naive(w, x)
        report(f'saelens normalize_activations={norm}', maxdiff(z, codes), maxdiff(o, out))
        assert maxdiff(z, codes) < 1e-4 and maxdiff(o, out) < 1e-4
        for stats in ('activation_scaler.json', 'activation_whitening.safetensors'): (tmp_path/norm/stats).unlink(missing_ok=True)
        assert 'normalize_activations' in load_sae(tmp_path/norm).forward_refused
    for norm in ('layer_norm', 'constant_norm_rescale'):
        cls, ccls = get_sae_class('standard')
        sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, normalize_activations=norm)))
        sae.save_model(tmp_path/norm)
        w = load_sae(tmp_path/norm)
        assert norm in w.forward_refused
        with pytest.raises(HusaiError, match=norm): stack_saes([w])
        same_directions(w, sae.W_dec.detach(), sae.W_enc.detach())


def test_saelens_bfloat16_without_b_dec_in_input(sl, tmp_path):
    from sae_lens.registry import get_sae_class
    cls, ccls = get_sae_class('standard')
    sae = _randomise(cls(ccls(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=False)))
    with torch.no_grad(): sae.b_dec.mul_(40)                    # a large b_dec makes a bf16 fold lose digits
    sae = sae.to(torch.bfloat16); sae.save_model(tmp_path)
    w, x = load_sae(tmp_path), _x()
    t = {k: v.double() for k, v in sae.state_dict().items()}   # the file's bf16 values, computed exactly
    ref = (x.double() @ t['W_enc'] + t['b_enc']).relu() @ t['W_dec'] + t['b_dec']
    with torch.no_grad(): got = stack_saes([w])(x)[0]                # husai's float32 forward
    report('saelens bf16 apply_b_dec_to_input=False (vs float64 on the bf16 weights)', maxdiff(naive(w, x)[1], ref), maxdiff(got, ref))
    assert maxdiff(naive(w, x)[1], ref) < 1e-6 and maxdiff(got, ref) < 1e-5


# ---------------------------------------------------------------- sparsify

@pytest.fixture(scope='module')
def sp():
    return pytest.importorskip('sparsify')


def _sparsify(sp, seed=0, **kw):
    sae = sp.SparseCoder(D_IN, sp.SparseCoderConfig(num_latents=D_SAE, k=K, **kw))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters(): p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 1.0))
    return sae


def _sparsify_forward(sae, x):
    with torch.no_grad():
        acts, idx, _ = sae.encode(x)
        codes = torch.zeros(len(x), D_SAE).scatter(-1, idx, acts)
        return codes, sae(x).sae_out


@pytest.mark.parametrize('kw', [{}, {'transcode': True}, {'skip_connection': True}, {'activation': 'groupmax'}],
                         ids=['topk', 'transcode', 'skip', 'groupmax'])
def test_sparsify_saes(sp, tmp_path, kw):
    sae = _sparsify(sp, **kw); sae.save_to_disk(tmp_path/'layers.0')
    assert set(json.loads((tmp_path/'layers.0'/'cfg.json').read_text())) == REAL_KEYS['sparsify']
    w, x = load_sae(tmp_path/'layers.0'), _x()
    codes, out = _sparsify_forward(sae, x)
    if kw.get('activation') == 'groupmax':
        with pytest.raises(HusaiError, match='groupmax'): stack_saes([w])
        same_directions(w, sae.W_dec.detach(), sae.encoder.weight.detach().T)
        return
    z, o = naive(w, x)
    report(f'sparsify {kw}', maxdiff(z, codes), maxdiff(o, out))
    assert maxdiff(z, codes) < 1e-5 and maxdiff(o, out) < 1e-5
    if kw.get('skip_connection'):
        with pytest.raises(HusaiError, match='skip connection'): stack_saes([w])
    else: check_stack(w, x, codes, out, f'sparsify {kw}')


def test_sparsify_hookpoints_are_not_seeds(sp, tmp_path):
    "A run's layout: one folder per hookpoint, `<hookpoint>/seed<N>` for several init seeds, the run's config.json."
    run = tmp_path/'run'
    for h in ('layers.0', 'layers.1'):
        for s in (0, 1): _sparsify(sp, seed=s).save_to_disk(run/h/f'seed{s}')
    sp.TrainConfig(sp.SparseCoderConfig(), hookpoints=['layers.0', 'layers.1'], init_seeds=[0, 1]).save_json(str(run/'config.json'))
    with pytest.raises(HusaiError, match='2 hookpoints'): load_saes(run)
    assert sorted(saes_by_hookpoint(run)) == ['layers.0', 'layers.1']
    assert [n for n, _ in load_saes(run/'layers.1')] == ['seed0', 'seed1']


# ---------------------------------------------------------------- dictionary_learning

@pytest.fixture(scope='module')
def dl_run(tmp_path_factory):
    "SAEs of every class, trained briefly by dictionary_learning's own trainSAE (its ae.pt and config.json)."
    pytest.importorskip('dictionary_learning')
    from dictionary_learning.training import trainSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK, TopKTrainer
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE, BatchTopKTrainer
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE, MatryoshkaBatchTopKTrainer
    from dictionary_learning.trainers.standard import StandardTrainer
    from dictionary_learning.trainers.gdm import GatedSAETrainer
    from dictionary_learning.trainers.jumprelu import JumpReluTrainer
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    torch.manual_seed(0)
    X = torch.relu(torch.randn(3000, 40)) ** 2 @ torch.randn(40, D_IN)
    data = (X[i % 30 * 100:(i % 30 + 1) * 100] for i in range(10 ** 6))
    c = dict(activation_dim=D_IN, dict_size=D_SAE, layer=3, lm_name='toy', device='cpu', steps=120, warmup_steps=5,
             submodule_name='resid_3')
    topk = dict(k=K, threshold_start_step=20)
    cfgs = [dict(trainer=TopKTrainer, dict_class=AutoEncoderTopK, seed=0, **topk, **c),
            dict(trainer=BatchTopKTrainer, dict_class=BatchTopKSAE, seed=1, **topk, **c),
            dict(trainer=MatryoshkaBatchTopKTrainer, dict_class=MatryoshkaBatchTopKSAE, seed=2, group_fractions=[1/3, 2/3], **topk, **c),
            dict(trainer=StandardTrainer, dict_class=AutoEncoder, l1_penalty=0.05, seed=3, sparsity_warmup_steps=5, **c),
            dict(trainer=GatedSAETrainer, dict_class=GatedAutoEncoder, l1_penalty=0.05, seed=4, sparsity_warmup_steps=5, **c),
            dict(trainer=JumpReluTrainer, dict_class=JumpReluAutoEncoder, seed=5, sparsity_warmup_steps=5, **c)]
    out = tmp_path_factory.mktemp('dl')
    trainSAE(data, cfgs, steps=120, save_dir=str(out), device='cpu')
    return out, [c['dict_class'] for c in cfgs]


def test_dictionary_learning_saes(dl_run):
    out, classes = dl_run
    x = _x()
    for i, cls in enumerate(classes):
        f = out/f'trainer_{i}'
        assert set(json.loads((f/'config.json').read_text())['trainer']) <= REAL_KEYS['dictionary_learning']
        ae = cls.from_pretrained(str(f/'ae.pt'), device='cpu') if cls.__name__ != 'JumpReluAutoEncoder' else None
        if ae is None:
            ae = cls(D_IN, D_SAE); ae.load_state_dict(torch.load(f/'ae.pt', weights_only=True))
        with torch.no_grad(): codes, out_ = ae.encode(x), ae(x)
        w = load_sae(f)
        z, o = naive(w, x)
        report(f'dictionary_learning {cls.__name__}', maxdiff(z, codes), maxdiff(o, out_))
        assert maxdiff(z, codes) < 1e-5 and maxdiff(o, out_) < 1e-5
        if cls.__name__ == 'GatedAutoEncoder':
            with pytest.raises(HusaiError, match="'gated' cannot run in husai yet"): stack_saes([w])
        else: check_stack(w, x, codes, out_, f'dictionary_learning {cls.__name__}')


def test_dictionary_learning_without_config(dl_run, tmp_path):
    "The class comes from the keys; AutoEncoderTopK and BatchTopKSAE share theirs, so their forward is refused."
    import shutil
    out, classes = dl_run
    x = _x()
    for i, cls in enumerate(classes):
        f = tmp_path/f't{i}'; f.mkdir(); shutil.copy(out/f'trainer_{i}'/'ae.pt', f/'ae.pt')
        w, ref = load_sae(f), load_sae(out/f'trainer_{i}')
        same_directions(w, ref.W_dec, ref.W_enc)
        if cls.__name__ in ('AutoEncoderTopK', 'BatchTopKSAE'):
            assert 'AutoEncoderTopK' in w.forward_refused
            with pytest.raises(HusaiError, match='BatchTopKSAE'): stack_saes([w])
        else:
            assert w.arch == ref.arch
            assert maxdiff(naive(w, x)[1], naive(ref, x)[1]) < 1e-6


def test_recorded_tensor_names_are_the_libraries(tmp_path):
    "husai.testing.REAL_STATE_KEYS (what the fixture writers write) against the classes of each installed library."
    from husai.testing import REAL_STATE_KEYS
    checked = 0
    try:
        import dictionary_learning.dictionary as dd, dictionary_learning.trainers.top_k as tk
        import dictionary_learning.trainers.batch_top_k as bt, dictionary_learning.trainers.matryoshka_batch_top_k as mt
        classes = {'AutoEncoder': (dd.AutoEncoder, ()), 'AutoEncoderNew': (dd.AutoEncoderNew, ()), 'GatedAutoEncoder': (dd.GatedAutoEncoder, ()),
                   'JumpReluAutoEncoder': (dd.JumpReluAutoEncoder, ()), 'AutoEncoderTopK': (tk.AutoEncoderTopK, (K,)),
                   'BatchTopKSAE': (bt.BatchTopKSAE, (K,)), 'MatryoshkaBatchTopKSAE': (mt.MatryoshkaBatchTopKSAE, (K, [8, 16]))}
        for name, (cls, args) in classes.items():
            assert set(cls(D_IN, D_SAE, *args).state_dict()) == REAL_STATE_KEYS['dictionary_learning'][name], name; checked += 1
    except ImportError: pass
    try:
        from sae_lens.registry import get_sae_class, get_sae_training_class
        for arch, keys in REAL_STATE_KEYS['saelens'].items():
            cls, ccls = (get_sae_training_class if arch == 'batchtopk' else get_sae_class)(arch)
            kw = {'k': K} if arch in ('topk', 'batchtopk') else {'d_out': D_IN, 'apply_b_dec_to_input': False} if 'transcoder' in arch else {}
            assert set(cls(ccls(d_in=D_IN, d_sae=D_SAE, **kw)).state_dict()) == keys, arch; checked += 1
    except ImportError: pass
    try:
        import sparsify
        for name, kw in (('topk', {}), ('skip_connection', {'skip_connection': True})):
            sae = sparsify.SparseCoder(D_IN, sparsify.SparseCoderConfig(num_latents=D_SAE, k=K, **kw))
            assert set(sae.state_dict()) == REAL_STATE_KEYS['sparsify'][name]; checked += 1
    except ImportError: pass
    if not checked: pytest.skip('none of SAELens, sparsify, dictionary_learning is installed')
