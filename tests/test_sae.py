"""SAE architectures: initialisation, encoders and decoders against naive references, config errors."""
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.sae import (ARCHITECTURES, SAEConfig, Codes, check_sae_config, geometric_median, init_saes,
                       sparse_decode)


def _acts(n=200, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) + 3.0



def test_init_is_per_seed_and_follows_the_recipe():
    cfg = SAEConfig('topk', d_in=8, d_sae=20, k=3)
    many, one = init_saes(cfg, [4, 7, 9]), init_saes(cfg, [7])
    assert torch.equal(many.W_dec[1], one.W_dec[0]) and torch.equal(many.W_enc[1], one.W_enc[0])
    assert not torch.allclose(many.W_dec[0], many.W_dec[1])
    torch.testing.assert_close(many.W_dec.norm(dim=-1), torch.ones(3, 20))
    assert torch.equal(many.W_enc, many.W_dec.transpose(1, 2))
    assert torch.count_nonzero(many.b_enc) == 0 and torch.count_nonzero(many.b_dec) == 0
    other = init_saes(SAEConfig('topk', 8, 20, k=3, init_enc_from_dec=False), [4])
    assert not torch.allclose(other.W_enc[0], other.W_dec[0].T)


@pytest.mark.parametrize('how', ['mean', 'geometric_median', 'zeros'])
def test_b_dec_from_data(how):
    acts = _acts()
    sae = init_saes(SAEConfig('relu', 8, 16, l1_coef=1e-3, b_dec_init=how), [0, 1], acts=acts)
    want = {'mean': acts.mean(0), 'zeros': torch.zeros(8), 'geometric_median': geometric_median(acts)}[how]
    torch.testing.assert_close(sae.b_dec, want.expand(2, 8))


def test_geometric_median_minimises_summed_distance():
    from scipy.optimize import minimize
    pts = _acts(50, 3, seed=1).double()
    f = lambda y: np.linalg.norm(pts.numpy() - y, axis=1).sum()
    ref = minimize(f, pts.mean(0).numpy(), method='Nelder-Mead', options={'xatol': 1e-9, 'fatol': 1e-12, 'maxiter': 20000}).x
    gm = geometric_median(pts).double().numpy()
    assert f(gm) <= f(ref) + 1e-4
    np.testing.assert_allclose(gm, ref, atol=1e-3)


def test_sparse_decode_equals_dense_reference():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 10, 4, generator=g); v = torch.randn(3, 6, 2, generator=g); i = torch.randint(0, 10, (3, 6, 2), generator=g)
    ref = torch.zeros(3, 6, 4)
    for s in range(3):
        for b in range(6):
            for j in range(2): ref[s, b] += v[s, b, j] * W[s, i[s, b, j]]
    torch.testing.assert_close(sparse_decode(W, v, i), ref)
    # gradients flow to the used rows only
    Wp = W.clone().requires_grad_()
    sparse_decode(Wp, v, i).sum().backward()
    unused = torch.ones(3, 10, dtype=torch.bool)
    for s in range(3): unused[s, i[s].flatten()] = False
    assert torch.count_nonzero(Wp.grad[unused]) == 0


def test_topk_encode_matches_naive():
    acts = _acts()
    sae = init_saes(SAEConfig('topk', 8, 16, k=3), [0, 1], acts=acts)
    x = acts[:10]
    z = sae.encode(x).detach()
    for s in range(2):
        pre = ((x - sae.b_dec[s]) @ sae.W_enc[s] + sae.b_enc[s]).detach().numpy()
        for b in range(10):
            top = np.argsort(-pre[b])[:3]
            want = np.zeros(16); want[top] = np.maximum(pre[b, top], 0)
            np.testing.assert_allclose(z[s, b].numpy(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sae(x), torch.bmm(z, sae.W_dec) + sae.b_dec[:, None])


def test_batchtopk_keeps_k_per_sample_on_average():
    acts = _acts()
    sae = init_saes(SAEConfig('batchtopk', 8, 16, k=3), [0, 1], acts=acts)
    pre = sae.pre_acts(acts[:32]).detach()
    codes = sae.activate(pre, train=True)
    z = codes.dense(16)
    for s in range(2):
        r = torch.relu(pre[s]).flatten()
        want = r.topk(3 * 32).values
        got = z[s].flatten()
        assert int((got > 0).sum()) == int((want > 0).sum())
        torch.testing.assert_close(got[got > 0].sort().values, want[want > 0].sort().values)
    # inference uses the threshold
    with torch.no_grad(): sae.threshold.fill_(0.5)
    zi = sae.encode(acts[:32]).detach()
    assert bool(((zi == 0) | (zi > 0.5)).all())


def test_relu_l1_and_parallel_gradient():
    acts = _acts()
    sae = init_saes(SAEConfig('relu', 8, 16, l1_coef=0.1), [0, 1], acts=acts)
    x = acts[:5]
    pre = sae.pre_acts(x); codes = sae.activate(pre)
    torch.testing.assert_close(sae.extra_loss(pre, codes, x, None, None), 0.1 * torch.relu(pre).sum(-1).mean(-1))
    (sae(x) - x).pow(2).sum().backward()
    sae.remove_parallel_grad_()
    torch.testing.assert_close((sae.W_dec.grad * sae.W_dec).sum(-1), torch.zeros(2, 16), atol=1e-5, rtol=0)


def test_auxk_loss_matches_naive():
    acts = _acts()
    cfg = SAEConfig('topk', 8, 16, k=2, aux_k=3, aux_coef=0.5)
    sae = init_saes(cfg, [0], acts=acts)
    x = acts[:12]
    pre = sae.pre_acts(x); codes = sae.activate(pre, True); xh = sae.decode_codes(codes)
    dead = torch.zeros(1, 16, dtype=torch.bool); dead[0, [1, 5, 6, 9]] = True
    got = sae.extra_loss(pre, codes, x, xh, dead)
    e = (x - xh[0]).detach()
    p = pre[0].detach().clone(); p[:, ~dead[0]] = -float('inf')
    v, i = p.topk(3, dim=-1)
    zaux = torch.zeros(12, 16).scatter(1, i, torch.relu(v))
    ehat = zaux @ sae.W_dec[0].detach()
    want = 0.5 * (e - ehat).pow(2).sum() / (e - e.mean(0)).pow(2).sum()
    torch.testing.assert_close(got[0].detach(), want, rtol=1e-5, atol=1e-7)
    assert float(sae.extra_loss(pre, codes, x, xh, torch.zeros(1, 16, dtype=torch.bool))[0]) == 0.0


@pytest.mark.parametrize('kw,msg', [
    (dict(arch='topk', d_sae=16, k=16), 'k < d_sae'),
    (dict(arch='topk', d_sae=16, k=None), 'k < d_sae'),
    (dict(arch='topk', d_sae=0, k=1), 'd_sae'),
    (dict(arch='relu', d_sae=16), 'l1_coef'),
    (dict(arch='gated', d_sae=16, k=2), 'unknown SAE architecture'),
    (dict(arch='topk', d_sae=16, k=2, b_dec_init='median'), 'b_dec_init'),
])
def test_config_errors(kw, msg):
    with pytest.raises(HusaiError, match=msg): check_sae_config(SAEConfig(d_in=8, **kw))


def test_repeated_seeds_and_registry():
    with pytest.raises(HusaiError, match='repeated'): init_saes(SAEConfig('topk', 8, 16, k=2), [1, 1])
    assert set(ARCHITECTURES) == {'topk', 'batchtopk', 'relu', 'jumprelu', 'matryoshka', 'archetypal'}
    assert check_sae_config(SAEConfig('topk', 8, 16, k=2)).aux_k == 4   # d_in // 2 (Gao et al.)


@pytest.mark.parametrize('k', [1, 5, 32, 100])
def test_topk_values_equals_torch_topk(k):
    g = torch.Generator().manual_seed(k)
    p = torch.randn(4, 30, 512, generator=g)
    p[0, :5, 10:40] = 2.5; p[1, :5] = torch.round(p[1, :5])   # many ties
    from husai.sae import topk_values
    v, i = topk_values(p, k)
    torch.testing.assert_close(v.sort(-1).values, p.topk(k, dim=-1).values.sort(-1).values, rtol=0, atol=0)
    assert torch.equal(p.gather(-1, i), v)
    assert bool((i.sort(-1).values.diff(dim=-1) > 0).all())


@pytest.mark.parametrize('kw,msg', [
    (dict(arch='relu', l1_coef=float('nan')), 'finite l1_coef >= 0'),   # a NaN coefficient used to pass (nan < 0 is False)
    (dict(arch='relu', l1_coef=float('inf')), 'finite l1_coef >= 0'),
    (dict(arch='topk', k=2, aux_coef=float('nan')), 'aux_coef'),
    (dict(arch='batchtopk', k=2, threshold_beta=1.5), 'threshold_beta'),
    (dict(arch='topk', k=2.0), 'int k'),
    (dict(arch='topk', k=True), 'int k'),
    (dict(arch='topk', k=2, dead_after=0.5), 'dead_after'),
    (dict(arch='topk', k=2, aux_k=-1), 'aux_k'),
    (dict(arch='topk', k=2, normalize_decoder='yes'), 'normalize_decoder'),
])
def test_config_values_are_finite_and_typed(kw, msg):
    with pytest.raises(HusaiError, match=msg): check_sae_config(SAEConfig(d_in=8, d_sae=16, **kw))
