"""The architectures of issue 13 (JumpReLU, Matryoshka, archetypal, ensembles) and the shared initialisation:
batched == alone, learning, their defining properties against naive references, and SAELens's format."""
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.sae import (ARCHITECTURES, SAEConfig, EnsembleSAEs, check_sae_config, init_saes, fit_ensemble,
                       member_seeds, select_seeds, cat_seeds, kmeans, trimmed_decode, sparse_decode)
from husai.synthetic import SyntheticConfig, make_synthetic
from husai.train_sae import TrainConfig, train_saes, evaluate, split_acts

NEW = ['jumprelu', 'matryoshka', 'archetypal']
SYN = make_synthetic(SyntheticConfig(n_samples=1500, seed=0)).X   # Song et al.'s setting, small: 32 atoms in 16 dims, 3 active


def _cfg(arch, **kw):
    base = dict(d_sae=32, k=3, dead_after=200)   # dead_after small: AuxK fires within a short run
    if arch == 'archetypal': base['archetypal_delta'] = 0.2
    return SAEConfig(arch, **{**base, **kw})


def _assert_same(a, b, i):
    sa, sb = a.saes.state_dict(), b.saes.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa: assert torch.equal(sa[k][i], sb[k][0]), k


# ---------------------------------------------------------------- batched == alone

@pytest.mark.parametrize('arch,kw', [
    ('jumprelu', {}), ('jumprelu', dict(jumprelu_sparsity='l0', l0_coef=0.05)),
    ('jumprelu', dict(jumprelu_sparsity='tanh', l0_coef=0.05)),
    ('matryoshka', {}), ('matryoshka', dict(group_sizes=(4, 12, 16))),
    ('archetypal', {}), ('archetypal', dict(archetypal_init='shared')), ('archetypal', dict(archetypal_init='off')),
    ('archetypal', dict(archetypal_candidates='points', archetypal_n_candidates=48, init_enc_from_dec=False)),
    ('topk', dict(init='shared', init_seed=7)),
])
@pytest.mark.parametrize('order', ['shared', 'per_seed'])
def test_batched_equals_single_bit_for_bit(arch, kw, order):
    cfg, tc = _cfg(arch, **kw), TrainConfig(steps=30, batch_size=64, data_order=order, log_every=10)
    many = train_saes(SYN, cfg, [2, 5, 9], tc, progress=False)
    one = train_saes(SYN, cfg, [5], tc, progress=False)
    _assert_same(many, one, 1)
    for key in ('fvu_eval', 'fvu_train', 'l0', 'dead_frac', 'aux_loss'): assert many.metrics[5][key] == one.metrics[5][key], key


def test_batchtopk_made_exact_by_the_trimmed_decode():
    # the parent BatchTopK is only equal up to ~1e-7 (tests/test_train_sae.py); its codes decoded the Matryoshka way are exact
    g = torch.Generator().manual_seed(0)
    W = torch.randn(2, 20, 6, generator=g)
    v = torch.rand(2, 7, 5, generator=g); v[0, :, 3:] = 0; v[1, :, 2:] = 0; v[1, 0, 2] = 0.5   # seed 1 is wider than seed 0
    i = torch.randint(0, 20, (2, 7, 5), generator=g)
    G = torch.randn(2, 7, 6, generator=g)
    def grad(Ws, vs, is_):
        Wp = Ws.clone().requires_grad_(); (trimmed_decode(Wp, vs, is_) * G[:len(Ws)]).sum().backward(); return Wp.grad
    both, alone = grad(W, v, i), grad(W[:1], v[:1, :, :3], i[:1, :, :3])   # seed 0 alone has 3 slots, beside seed 1 it had 5
    assert torch.equal(both[0], alone[0])
    torch.testing.assert_close(trimmed_decode(W, v, i), sparse_decode(W, v, i))


def test_shared_init_needs_a_per_seed_data_order():
    cfg = _cfg('topk', init='shared')
    same = train_saes(SYN, cfg, [0, 1], TrainConfig(steps=20, batch_size=64), progress=False).saes
    assert torch.equal(same.W_dec[0], same.W_dec[1])           # one start, one data order: one run
    apart = train_saes(SYN, cfg, [0, 1], TrainConfig(steps=20, batch_size=64, data_order='per_seed'), progress=False).saes
    assert not torch.equal(apart.W_dec[0], apart.W_dec[1])
    start = init_saes(cfg, [0, 1], acts=SYN)
    assert torch.equal(start.W_enc[0], init_saes(_cfg('topk'), [0], acts=SYN).W_enc[0])   # init_seed 0's own draw


def _member(cfg, tc):
    return lambda a, s: train_saes(a, cfg, s, tc, progress=False).saes


def test_bagged_ensemble_is_the_same_built_beside_others_or_alone():
    cfg, tc = _cfg('topk'), TrainConfig(steps=25, batch_size=64)
    both = fit_ensemble(SYN, [0, 1], 3, _member(cfg, tc))
    alone = fit_ensemble(SYN, [1], 3, _member(cfg, tc))
    assert both.n_seeds == 2 and tuple(both.W_dec.shape) == (2, 96, 16)
    assert torch.equal(both.W_dec[1], alone.W_dec[0]) and torch.equal(both.W_enc[1], alone.W_enc[0])
    x = SYN[:50]
    with torch.no_grad(): assert torch.equal(both(x)[1], alone(x)[0])
    # its members are the seeds member_seeds names, trained like any SAE
    m = train_saes(SYN, cfg, member_seeds([1], 3), tc, progress=False).saes
    assert torch.equal(alone.W_dec[0], torch.cat(list(m.W_dec)))


def test_boosted_ensemble_trains_each_member_on_the_residual():
    cfg, tc = _cfg('topk', k=2), TrainConfig(steps=40, batch_size=64)
    ens = fit_ensemble(SYN, [4], 2, _member(cfg, tc), kind='boosting')
    first = train_saes(SYN, cfg, [8], tc, progress=False).saes           # member seeds of ensemble 4: 8, 9
    with torch.no_grad(): r = SYN - first(SYN)[0]
    second = train_saes(r, cfg, [9], tc, progress=False).saes
    assert torch.equal(ens.members[0].W_dec, first.W_dec) and torch.equal(ens.members[1].W_dec, second.W_dec)
    with torch.no_grad():
        x = SYN[:40]
        torch.testing.assert_close(ens(x)[0], first(x)[0] + second(x - first(x)[0])[0])
        assert ((ens(x)[0] - x).pow(2).sum() < (first(x)[0] - x).pow(2).sum())   # the second member takes error away


def test_bootstrap_bagging_uses_resampled_rows():
    cfg, tc = _cfg('topk'), TrainConfig(steps=10, batch_size=64)
    seen = []
    def member(a, s):
        seen.append((a, s)); return train_saes(a, cfg, s, tc, progress=False).saes
    ens = fit_ensemble(SYN, [0], 2, member, bootstrap=True)
    assert [s for _, s in seen] == [[0], [1]] and ens.n_seeds == 1
    a0 = seen[0][0]
    assert a0.shape == SYN.shape and not torch.equal(a0, SYN) and len(torch.unique(a0, dim=0)) < len(SYN)


# ---------------------------------------------------------------- learning

def _fvu(sae, x):
    with torch.no_grad(): return [((x - xh) ** 2).sum().item() / ((x - x.mean(0)) ** 2).sum().item() for xh in sae(x)]


@pytest.mark.parametrize('arch', NEW + ['ensemble'])
def test_each_architecture_learns_song_data(arch):
    tc = TrainConfig(steps=400, batch_size=128, lr=3e-3)
    _, held = split_acts(SYN, tc.eval_frac, tc.split_seed)
    if arch == 'ensemble':
        cfg = _cfg('topk')
        trained = fit_ensemble(SYN, [0, 1], 2, _member(cfg, tc))
        untrained = EnsembleSAEs.from_members(init_saes(cfg, member_seeds([0, 1], 2), acts=SYN), 2)
    else:
        trained = train_saes(SYN, _cfg(arch), [0, 1], tc, progress=False).saes
        untrained = init_saes(_cfg(arch), [0, 1], acts=split_acts(SYN, tc.eval_frac, tc.split_seed)[0])
    after, before = _fvu(trained, held), _fvu(untrained, held)
    assert all(a < 0.3 and a < 0.5 * b for a, b in zip(after, before)), (after, before)


def test_jumprelu_l0_follows_its_coefficient():
    tc = TrainConfig(steps=300, batch_size=128, lr=3e-3)
    l0 = {c: train_saes(SYN, _cfg('jumprelu', jumprelu_sparsity='l0', l0_coef=c), [0], tc, progress=False).metrics[0]['l0']
          for c in (1e-3, 3e-2, 3e-1)}
    assert l0[1e-3] > l0[3e-2] > l0[3e-1], l0
    target = train_saes(SYN, _cfg('jumprelu', k=4), [0], tc, progress=False).metrics[0]['l0']   # 'target': L0 steered to k
    assert 3 < target < 5, target


def test_matryoshka_first_group_reconstructs_better_than_random_latents():
    cfg = _cfg('matryoshka', group_sizes=(8, 8, 16))
    sae = train_saes(SYN, cfg, [0], TrainConfig(steps=400, batch_size=128, lr=3e-3), progress=False).saes
    x = SYN[:600]
    with torch.no_grad():
        z = sae.encode(x)[0]
        def fvu(keep):
            zz = torch.zeros_like(z); zz[:, keep] = z[:, keep]
            xh = zz @ sae.W_dec[0] + sae.b_dec[0]
            return float(((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        g = torch.Generator().manual_seed(0)
        rand = [fvu(torch.randperm(32, generator=g)[:8]) for _ in range(20)]
        first = fvu(torch.arange(8))
        torch.testing.assert_close(sae.prefix_decode(sae.encode_codes(x), 8)[0], z[:, :8] @ sae.W_dec[0, :8] + sae.b_dec[0])
    assert first < min(rand) and first < 0.8, (first, min(rand))


def test_matryoshka_loss_is_the_sum_of_prefix_losses():
    sae = init_saes(_cfg('matryoshka', group_sizes=(4, 12, 16), aux_k=0), [0, 1], acts=SYN)
    x = SYN[:30]
    pre = sae.pre_acts(x); codes = sae.activate(pre, train=True); xh = sae.decode_codes(codes)
    got = sae.extra_loss(pre, codes, x, xh, None)
    z = codes.dense(32).detach()
    for s in range(2):
        want = 0.0
        for w in (4, 16):   # the last prefix (32) is the trainer's MSE
            rec = z[s, :, :w] @ sae.W_dec[s, :w].detach() + sae.b_dec[s].detach()
            want += float(((x - rec) ** 2).sum(1).mean())
        assert float(got[s].detach()) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------- defining properties

def _dist_to_hull(y, C):
    "Distance from y to the convex hull of the rows of C (non-negative least squares with a heavily weighted sum-to-one row)."
    from scipy.optimize import nnls
    M = 1e3
    A = np.vstack([C.T, M * np.ones((1, len(C)))])
    a, _ = nnls(A, np.concatenate([y, [M]]), maxiter=5000)
    return float(np.linalg.norm(C.T @ a - y))


def test_archetypal_atoms_stay_within_delta_of_the_candidates_hull():
    delta = 0.05
    res = train_saes(SYN, _cfg('archetypal', archetypal_delta=delta), [0], TrainConfig(steps=200, batch_size=128, lr=1e-2),
                     progress=False)
    sae = res.saes
    with torch.no_grad():
        D = (sae.W_dec[0] / sae.log_scale[0].exp()).double().numpy()
        C = sae.C[0].double().numpy()
        torch.testing.assert_close(sae.W_dec[0], (sae.A[0] @ sae.C[0] + sae.Lambda[0]) * sae.log_scale[0].exp())
    d = np.array([_dist_to_hull(D[i], C) for i in range(len(D))])
    assert d.max() <= delta + 1e-4, d.max()
    assert d.max() > delta / 2          # the relaxation is used, so the bound is what holds the atoms
    A = sae.A.detach()
    assert float(A.min()) >= 0 and torch.allclose(A[0].sum(1), torch.ones(32), atol=1e-5)
    assert not torch.allclose(A[0], torch.eye(32))   # the atoms moved from their starting candidates


def test_archetypal_candidates_are_the_kmeans_centroids():
    cfg = _cfg('archetypal', archetypal_init='shared', init_seed=3)
    sae = init_saes(cfg, [0, 1], acts=SYN)
    want = kmeans(SYN, 32, torch.Generator().manual_seed(3))
    assert torch.equal(sae.C[0], want) and torch.equal(sae.C[1], want)
    # Lloyd's fixed point: every centroid is the mean of the rows nearest to it
    near = torch.cdist(SYN, want).argmin(1)
    for j in range(32):
        if (near == j).any(): torch.testing.assert_close(want[j], SYN[near == j].mean(0), atol=1e-5, rtol=0)
    per = init_saes(_cfg('archetypal'), [0, 1], acts=SYN)
    assert not torch.equal(per.C[0], per.C[1])
    assert torch.equal(per.C[1], init_saes(_cfg('archetypal'), [1], acts=SYN).C[0])


def test_jumprelu_pseudo_derivatives_against_the_paper_formulas():
    cfg = SAEConfig('jumprelu', d_in=6, d_sae=10, jumprelu_sparsity='l0', l0_coef=0.3, jumprelu_bandwidth=0.4)
    sae = init_saes(cfg, [0, 1], acts=SYN[:, :6])
    with torch.no_grad(): sae.threshold.copy_(torch.rand(2, 10, generator=torch.Generator().manual_seed(1)) * 0.5)
    x = SYN[:40, :6]
    pre = sae.pre_acts(x); codes = sae.activate(pre, train=True)
    g = torch.randn_like(codes.vals)
    (codes.vals * g).sum().backward(retain_graph=True)
    P, T, eps = pre.detach(), sae.threshold.detach(), 0.4
    K = ((P - T[:, None]).abs() / eps < 0.5).double()
    want = (-(T[:, None] / eps) * K * g).sum(1)
    torch.testing.assert_close(sae.threshold.grad.double(), want, rtol=1e-5, atol=1e-6)
    sae.threshold.grad = None
    sae.extra_loss(pre, codes, x, None, None).sum().backward()
    torch.testing.assert_close(sae.threshold.grad.double(), (-(1 / eps) * K).sum(1) * 0.3 / 40, rtol=1e-5, atol=1e-6)
    assert float(sae.threshold.min()) >= 0 and sae.threshold.dtype == torch.float32


@pytest.mark.parametrize('kw,msg', [
    (dict(arch='jumprelu', jumprelu_sparsity='l0'), 'l0_coef'),
    (dict(arch='jumprelu', k=None), 'target L0'),
    (dict(arch='jumprelu', jumprelu_sparsity='l1', l0_coef=1.0), "'l0', 'tanh' or 'target'"),
    (dict(arch='jumprelu', jumprelu_bandwidth=0.0), 'bandwidth'),
    (dict(arch='matryoshka', group_sizes=(8, 8)), 'summing to d_sae'),
    (dict(arch='matryoshka', group_sizes=(8, 0, 24)), 'positive ints'),
    (dict(arch='archetypal', archetypal_n_candidates=16), '>= d_sae'),
    (dict(arch='archetypal', archetypal_init='kmeans'), "'shared', 'per_seed' or 'off'"),
    (dict(arch='archetypal', archetypal_candidates='grid'), "'kmeans' or 'points'"),
    (dict(arch='archetypal', archetypal_delta=-1.0), 'archetypal_delta'),
    (dict(arch='topk', init='same'), "'per_seed' or 'shared'"),
    (dict(arch='topk', init_seed=-1), 'init_seed'),
])
def test_config_errors(kw, msg):
    with pytest.raises(HusaiError, match=msg): check_sae_config(SAEConfig(**{'d_in': 16, 'd_sae': 32, 'k': 3, **kw}))


def test_config_defaults_are_filled_in():
    m = check_sae_config(SAEConfig('matryoshka', d_in=8, d_sae=64, k=3))
    assert m.group_sizes == (4, 4, 8, 16, 32)
    a = check_sae_config(SAEConfig('archetypal', d_in=8, d_sae=64, k=3))
    assert (a.archetypal_n_candidates, a.b_dec_init, a.normalize_decoder, a.remove_parallel_grad) == (64, 'zeros', False, False)
    j = check_sae_config(SAEConfig('jumprelu', d_in=8, d_sae=64, k=3))
    assert (j.l0_coef, j.aux_k) == (1.0, 0)
    with pytest.raises(HusaiError, match='pass acts'): init_saes(SAEConfig('archetypal', d_in=8, d_sae=64, k=3), [0])


def test_select_and_cat_seeds_round_trip():
    sae = init_saes(_cfg('archetypal'), [0, 1, 2], acts=SYN)
    parts = [select_seeds(sae, [2]), select_seeds(sae, [0, 1])]
    back = cat_seeds(parts[::-1])
    for k, v in sae.state_dict().items(): assert torch.equal(back.state_dict()[k], v), k
    with pytest.raises(HusaiError, match='one architecture'): cat_seeds([sae, init_saes(_cfg('topk'), [0], acts=SYN)])


# ---------------------------------------------------------------- SAELens's format

def _saelens_jumprelu(x, t, apply_b_dec_to_input=True):
    "SAELens's JumpReLU inference (JumpReLUSAE.encode / decode), written out here."
    sae_in = x - t['b_dec'] if apply_b_dec_to_input else x
    pre = sae_in @ t['W_enc'] + t['b_enc']
    z = torch.relu(pre) * (pre > t['threshold']).to(pre.dtype)
    return z, z @ t['W_dec'] + t['b_dec']


@pytest.mark.parametrize('apply', [True, False])
def test_jumprelu_runs_saelens_files_with_their_codes(apply):
    g = torch.Generator().manual_seed(0)
    d, m = 16, 40
    W_dec = torch.randn(m, d, generator=g); W_dec /= W_dec.norm(dim=1, keepdim=True)
    t = {'W_enc': 0.5 * torch.randn(d, m, generator=g), 'W_dec': W_dec, 'b_enc': 0.1 * torch.randn(m, generator=g),
         'b_dec': 0.2 * torch.randn(d, generator=g), 'threshold': 0.3 * torch.rand(m, generator=g)}
    cfg = {'architecture': 'jumprelu', 'd_in': d, 'd_sae': m, 'dtype': 'float32', 'apply_b_dec_to_input': apply,
           'normalize_activations': 'none', 'metadata': {'hook_name': 'blocks.0.hook_resid_post'}}
    sae = ARCHITECTURES['jumprelu'].from_saelens(cfg, [t])
    x = SYN[:64]
    z, xh = _saelens_jumprelu(x, t, apply)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x)[0], z, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x)[0], xh, rtol=1e-5, atol=1e-5)
    assert torch.equal(sae.threshold[0], t['threshold']) and sae.threshold.dtype == torch.float32
    assert int((z > 0).sum()) > 0 and int((z == 0).sum()) > int((torch.relu(x @ t['W_enc'] + t['b_enc']) == 0).sum())
    with pytest.raises(HusaiError, match='normalize_activations'):
        ARCHITECTURES['jumprelu'].from_saelens({**cfg, 'normalize_activations': 'layer_norm'}, [t])
    with pytest.raises(HusaiError, match='W_enc has shape'):
        ARCHITECTURES['jumprelu'].from_saelens(cfg, [{**t, 'W_enc': t['W_enc'].T}])


def _trained(arch, **kw):
    return train_saes(SYN, _cfg(arch, **kw), [0, 1], TrainConfig(steps=60, batch_size=64, lr=3e-3), progress=False).saes


@pytest.mark.parametrize('arch', sorted(ARCHITECTURES))
def test_saelens_round_trip_keeps_rows_thresholds_and_k(arch):
    kw = dict(l1_coef=1e-2) if arch == 'relu' else {}
    sae = _trained(arch, **kw)
    saved = [sae.to_saelens(i) for i in range(2)]
    cfg, t = saved[1]
    want_arch = {'topk': 'topk', 'archetypal': 'topk', 'relu': 'standard'}.get(arch, 'jumprelu')
    assert cfg['architecture'] == want_arch and cfg['husai_arch'] == arch and (cfg['d_in'], cfg['d_sae']) == (16, 32)
    assert set(t) == {'W_enc', 'W_dec', 'b_enc', 'b_dec'} | ({'threshold'} if want_arch == 'jumprelu' else set())
    assert tuple(t['W_enc'].shape) == (16, 32) and tuple(t['W_dec'].shape) == (32, 16)
    assert torch.equal(t['W_dec'][7], sae.W_dec[1, 7].detach())                     # a known decoder row
    if want_arch == 'jumprelu':
        thr = sae.threshold[1].detach()
        assert torch.equal(t['threshold'], thr.expand(32) if thr.dim() == 0 else thr)   # broadcast as SAELens does
    if arch != 'relu': assert cfg['k'] == 3
    back = type(sae).from_saelens(cfg, [t])
    assert back.cfg.k == sae.cfg.k and torch.equal(back.W_dec[0], sae.W_dec[1].detach())
    if hasattr(sae, 'threshold'): assert torch.equal(back.threshold[0], sae.threshold[1].detach())
    x = SYN[:64]
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], sae(x)[1], rtol=1e-5, atol=1e-5)
        if want_arch == 'jumprelu':   # what SAELens itself computes from the file
            torch.testing.assert_close(_saelens_jumprelu(x, t)[1], sae(x)[1], rtol=1e-5, atol=1e-5)
            as_jumprelu = ARCHITECTURES['jumprelu'].from_saelens({k: v for k, v in cfg.items() if k != 'sae_cfg'}, [t])
            torch.testing.assert_close(as_jumprelu.encode(x)[0], sae.encode(x)[1], rtol=1e-5, atol=1e-5)
    if arch == 'matryoshka': assert cfg['matryoshka_widths'] == [2, 4, 8, 16, 32]


def test_batchtopk_threshold_that_varies_is_refused():
    cfg, t = _trained('batchtopk').to_saelens(0)
    t['threshold'] = t['threshold'].clone(); t['threshold'][3] += 0.1
    with pytest.raises(HusaiError, match="load it as 'jumprelu'"): ARCHITECTURES['batchtopk'].from_saelens(cfg, [t])


@pytest.mark.parametrize('member', ['jumprelu', 'matryoshka', 'relu'])
def test_bagged_ensemble_as_one_saelens_sae(member):
    cfg = _cfg(member, d_sae=16, l1_coef=1e-2)
    tc = TrainConfig(steps=40, batch_size=64, lr=3e-3)
    ens = fit_ensemble(SYN, [0, 1], 3, _member(cfg, tc))
    c, t = ens.to_saelens(1)
    assert c['husai_arch'] == 'ensemble' and c['d_sae'] == 48 and tuple(t['W_dec'].shape) == (48, 16)
    assert torch.equal(t['W_dec'], ens.W_dec[1].detach())
    x = SYN[:64]
    with torch.no_grad():
        if c['architecture'] == 'jumprelu': xh = _saelens_jumprelu(x, t)[1]
        else: xh = torch.relu((x - t['b_dec']) @ t['W_enc'] + t['b_enc']) @ t['W_dec'] + t['b_dec']
        torch.testing.assert_close(xh, ens(x)[1], rtol=1e-5, atol=1e-5)
    boost = EnsembleSAEs(list(ens.members), 'boosting')
    with pytest.raises(HusaiError, match='save its members'): boost.to_saelens(0)


def test_topk_ensemble_has_no_saelens_form_but_measures_like_an_sae():
    from husai.stability import mmcs
    ens = fit_ensemble(SYN, [0, 1], 2, _member(_cfg('topk', d_sae=16), TrainConfig(steps=20, batch_size=64)))
    with pytest.raises(HusaiError, match='save its members'): ens.to_saelens(0)
    ev = evaluate(ens, SYN[:200])
    assert len(ev['fvu']) == 2 and all(0 < f < 1.5 for f in ev['fvu'])
    assert ev['l0'][0] == pytest.approx(6.0, abs=0.5)      # 2 members x k=3 (ReLU can zero a few)
    s = mmcs(ens.W_dec[0].detach(), ens.W_dec[1].detach())
    assert 0 < s <= 1

def test_jumprelu_target_starts_at_l0_k_on_its_data():
    "With jumprelu_sparsity='target', init_saes puts each seed's thresholds where its codes on the data have L0 = k."
    from husai.sae import SAEConfig, init_saes
    x = torch.randn(600, 12, generator=torch.Generator().manual_seed(0)) * torch.linspace(2, 0.3, 12)
    sae = init_saes(SAEConfig('jumprelu', d_in=12, d_sae=40, k=5), [0, 1, 2], acts=x)
    with torch.no_grad(): l0 = (sae.encode(x) > 0).sum(-1).float().mean(-1)
    assert torch.allclose(l0, torch.full((3,), 5.0), atol=0.01)
    cold = init_saes(SAEConfig('jumprelu', d_in=12, d_sae=40, jumprelu_sparsity='l0', l0_coef=0.1), [0], acts=x)
    assert torch.all(cold.threshold == 0.01)                                   # the paper's penalty keeps SAELens's start
