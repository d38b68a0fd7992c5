"""Baselines: the exact expectation against Monte Carlo and GUIDE §6, random dictionaries, dimension summaries."""
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.baselines import (expected_max_cos, expected_mmcs, random_saes, untrained_saes, n_components, effective_rank,
                             participation_ratio, variance_components)
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
