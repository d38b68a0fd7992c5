"""Baselines: the exact expectation against Monte Carlo and GUIDE §6, random dictionaries, dimension summaries."""
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.baselines import (expected_max_cos, expected_mmcs, random_saes, untrained_saes, n_components, effective_rank,
                             participation_ratio, variance_components, shared_fraction_bound, isotropic_baseline)
from husai import baselines as BL
from husai.stability import pairwise, decoder_rows, encoder_rows

GUIDE_TABLE = [(16, 32, 0.500, 0.557), (128, 64, 0.206, 0.228), (128, 512, 0.266, 0.283), (128, 1024, 0.283, 0.299),
               (768, 4096, 0.130, 0.137)]

@pytest.mark.parametrize('d,N,signed,absolute', GUIDE_TABLE)
def test_expected_max_cos_matches_guide_table(d, N, signed, absolute):
    assert expected_max_cos(d, N) == pytest.approx(signed, abs=5e-4)
    assert expected_max_cos(d, N, absolute=True) == pytest.approx(absolute, abs=5e-4)

def mc(d, N, absolute, n=40_000, seed=0, chunk=2000):
    "Monte Carlo E[max cos]: by rotation invariance the fixed vector can be e_1, so a cosine is v_1 / |v|."
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(n // chunk):
        v = torch.randn(chunk, N, d, generator=g)
        c = v[..., 0] / v.norm(dim=2)
        out.append((c.abs() if absolute else c).amax(1))
    return torch.cat(out).double().mean().item()

@pytest.mark.parametrize('d,N', [(16, 32), (8, 5), (64, 100), (3, 1)])
@pytest.mark.parametrize('absolute', [False, True])
def test_expected_max_cos_matches_monte_carlo(d, N, absolute):
    assert expected_max_cos(d, N, absolute) == pytest.approx(mc(d, N, absolute), abs=0.005)

def test_expected_max_cos_closed_forms():
    assert expected_max_cos(7, 1) == pytest.approx(0, abs=1e-9)            # one signed cosine: mean 0
    # one |cosine| in 3 dims is uniform on [0, 1] (Archimedes): mean 1/2
    assert expected_max_cos(3, 1, absolute=True) == pytest.approx(0.5, abs=1e-9)
    # two signed cosines in 3 dims: E[max of two U(-1,1)] = 1/3
    assert expected_max_cos(3, 2) == pytest.approx(1 / 3, abs=1e-9)
    with pytest.raises(HusaiError): expected_max_cos(1, 5)

def test_isotropic_monte_carlo_mmcs_matches_exact():
    saes = random_saes('isotropic', 32, 64, seeds=range(12))
    assert pairwise(saes, 'mmcs').values.mean() == pytest.approx(expected_mmcs(32, 64), abs=0.005)
    assert expected_mmcs(32, 64, 128) == pytest.approx((expected_max_cos(32, 128, True) + expected_max_cos(32, 64, True)) / 2)

def test_song_random_floor():
    "Song et al.: two random 32 x 16 dictionaries have Hungarian MCC ~0.46."
    v = pairwise(random_saes('isotropic', 16, 32, seeds=range(30)), 'hungarian_mcc').values.mean()
    assert v == pytest.approx(0.46, abs=0.02)

def low_rank_acts(r=6, d=48, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, r, generator=g) @ torch.randn(r, d, generator=g)

def test_subspace_baselines_live_in_the_subspace_and_rise():
    acts = low_rank_acts()
    _, _, Vh = torch.linalg.svd(acts - acts.mean(0), full_matrices=False)
    P = Vh[:6].T @ Vh[:6]                                             # projector on the data's subspace
    iso = random_saes('isotropic', 48, 64, range(3))
    for kind in ('covariance', 'principal'):
        saes = random_saes(kind, 48, 64, range(3), acts=acts)
        W, E = decoder_rows(saes[0]), encoder_rows(saes[0])
        assert torch.allclose(W @ P, W, atol=1e-4) and torch.allclose(E @ P, E, atol=1e-4)
        assert torch.allclose(W.norm(dim=1), torch.ones(64), atol=1e-5)
        assert pairwise(saes, 'mmcs').values.mean() > pairwise(iso, 'mmcs').values.mean() + 0.2
    assert n_components(acts, 0.999999) == 6
    with pytest.raises(HusaiError, match='needs the activations'): random_saes('principal', 48, 64, range(2))
    with pytest.raises(HusaiError, match='unknown baseline'): random_saes('gaussian', 48, 64, range(2))

def test_random_saes_are_seeded():
    a, b = random_saes('isotropic', 8, 16, [3, 4]), random_saes('isotropic', 8, 16, [3])
    assert torch.equal(a[0].W_dec, b[0].W_dec) and not torch.equal(a[0].W_dec, a[1].W_dec)

def test_untrained_saes_use_the_sae_init():
    from husai.sae import SAEConfig, init_saes
    cfg = SAEConfig(arch='topk', d_in=16, d_sae=32, k=3)
    u = untrained_saes(cfg, [0, 1])
    assert torch.equal(u.W_dec, init_saes(cfg, [0, 1]).W_dec)
    from husai.report import baseline_matrices
    v = baseline_matrices(('untrained', 'isotropic', 'isotropic_exact'), ('hungarian_mcc',), 16, 32, [0, 1, 2], sae_cfg=cfg)
    assert set(v['isotropic_exact']) == {'mmcs'} and set(v['untrained']) == {'hungarian_mcc'}   # no exact value for hungarian_mcc

def test_dimension_summaries():
    g = torch.Generator().manual_seed(1)
    Q = torch.linalg.qr(torch.randn(3000, 30, generator=g, dtype=torch.float64))[0]
    X = Q[:, :5] * torch.tensor([1., 1, 1, 1, 1], dtype=torch.float64) @ torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))[0][:5]
    X = X - X.mean(0)
    assert effective_rank(X) == pytest.approx(5, abs=0.05)
    assert participation_ratio(X) == pytest.approx(5, abs=0.05)
    s = torch.tensor([4., 2, 1, 1])                                      # known spectrum: check the formulas directly
    Y = torch.linalg.qr(torch.randn(500, 4, generator=g, dtype=torch.float64))[0] * s.double()
    Y = torch.cat([Y, -Y])                                               # mean exactly zero, same singular-value ratios
    p = s / s.sum(); assert effective_rank(Y) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-6)
    l = s ** 2; assert participation_ratio(Y) == pytest.approx(float(l.sum() ** 2 / (l ** 2).sum()), rel=1e-6)
    vc = variance_components(Y)                                          # variances 16, 4, 1, 1 of 22
    assert vc == {0.9: 2, 0.95: 3, 0.99: 4}
    with pytest.raises(HusaiError, match='NaN'): effective_rank(torch.tensor([[1.0, float('nan')], [0.0, 1.0]]))



# ---------------------------------------------------------------------------------------------
# isotropic_baseline: exact where it can be, a proved bound where it is negligible, else cached Monte Carlo

def test_shared_fraction_bound_is_above_monte_carlo_and_negligible_in_high_dimension():
    for d, m, t in [(6, 40, 0.8), (8, 64, 0.9), (12, 30, 0.7)]:
        mc = pairwise(random_saes('isotropic', d, m, seeds=range(8)), 'shared_fraction', threshold=t).values.mean()
        assert mc <= shared_fraction_bound(d, m, threshold=t)
    assert shared_fraction_bound(768, 16384) < 1e-90 and shared_fraction_bound(768, 16384, 32768) < 1e-90
    # the tail probability the bound uses, against Monte Carlo of one cosine (no cancellation near 1)
    g = torch.Generator().manual_seed(0); v = torch.randn(400_000, 5, generator=g, dtype=torch.float64)
    p_mc = float((v[:, 0] / v.norm(dim=1) > 0.6).double().mean())
    assert shared_fraction_bound(5, 1, 1, 0.6) == pytest.approx(p_mc ** 2, rel=0.03)

def test_isotropic_baseline_mmcs_exact_and_shared_fraction_bound():
    r = isotropic_baseline('mmcs', 128, 1024, 512)
    assert r['method'] == 'exact' and r['value'] == pytest.approx(expected_mmcs(128, 1024, 512))
    s = isotropic_baseline('shared_fraction', 768, 16384)
    assert s['method'] == 'bound' and s['value'] == 0.0 and s['bound'] < 1e-90
    with pytest.raises(HusaiError, match='unknown metric'): isotropic_baseline('pwmcc', 16, 32)
    with pytest.raises(HusaiError, match='draws'): isotropic_baseline('hungarian_mcc', 16, 32, draws=1, cache=False)

def test_isotropic_baseline_monte_carlo_is_the_mean_over_independent_exact_matchings(tmp_path):
    r = isotropic_baseline('hungarian_mcc', 12, 40, 55, draws=5, seed=3, root=tmp_path)
    want = []
    for p in range(5):                                    # the documented draws, recomputed independently
        a = random_saes('isotropic', 12, 40, [BL._draw_seed(3, p, 0)])[0]
        b = random_saes('isotropic', 12, 55, [BL._draw_seed(3, p, 1)])[0]
        ua, ub = (decoder_rows(x).double() / decoder_rows(x).double().norm(dim=1, keepdim=True) for x in (a, b))
        C = (ua @ ub.T).numpy()
        from scipy.optimize import linear_sum_assignment
        want.append(C[linear_sum_assignment(C, maximize=True)].mean())
    assert r['method'] == 'monte_carlo' and r['draws'] == 5 and not r['cached'] and r['exact']
    assert r['values'] == pytest.approx(want, abs=1e-9)
    assert r['value'] == pytest.approx(np.mean(want), abs=1e-9) and r['se'] == pytest.approx(np.std(want, ddof=1) / 5 ** 0.5)

def test_isotropic_baseline_cache_hit_other_draws_and_corrupt_file(tmp_path, monkeypatch):
    first = isotropic_baseline('hungarian_mcc', 10, 30, draws=3, root=tmp_path)
    files = list((tmp_path / 'baselines').glob('*.json')); assert len(files) == 1
    def boom(*a, **k): raise AssertionError('a cached baseline was recomputed')
    monkeypatch.setattr(BL, '_isotropic_draw', boom)
    again = isotropic_baseline('hungarian_mcc', 10, 30, draws=3, root=tmp_path)
    assert again['cached'] and again['value'] == first['value'] and again['values'] == first['values']
    monkeypatch.undo()
    more = isotropic_baseline('hungarian_mcc', 10, 30, draws=4, root=tmp_path)   # never the 3 cached draws for 4 asked
    assert not more['cached'] and len(more['values']) == 4 and more['values'][:3] == pytest.approx(first['values'])
    assert len(list((tmp_path / 'baselines').glob('*.json'))) == 2
    files[0].write_text('{not json')                                              # a corrupt entry is recomputed, not fatal
    fixed = isotropic_baseline('hungarian_mcc', 10, 30, draws=3, root=tmp_path)
    assert not fixed['cached'] and fixed['value'] == pytest.approx(first['value'])
    assert isotropic_baseline('hungarian_mcc', 10, 30, draws=3, root=tmp_path)['cached']

def test_isotropic_baseline_reproduces_song_random_floor():
    "Song et al.: two random 32 x 16 dictionaries have Hungarian MCC ~0.46."
    r = isotropic_baseline('hungarian_mcc', 16, 32, draws=40, cache=False)
    assert r['value'] == pytest.approx(0.46, abs=0.02) and r['se'] < 0.01

def test_isotropic_baseline_shared_fraction_monte_carlo_in_few_dimensions(tmp_path):
    r = isotropic_baseline('shared_fraction', 6, 40, threshold=0.8, draws=6, root=tmp_path)
    assert r['method'] == 'monte_carlo' and 0 < r['value'] <= shared_fraction_bound(6, 40, threshold=0.8)
    other = isotropic_baseline('shared_fraction', 6, 40, threshold=0.9, draws=6, root=tmp_path)
    assert not other['cached'] and other['threshold'] == 0.9       # the threshold is part of the key
