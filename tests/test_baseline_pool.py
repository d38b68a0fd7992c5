"""Properties every baseline of the pool must have (issue 10): a perfectly stable dictionary — live latents identical
across seeds, dead latents random, as a trained SAE's — scores clearly above it, and the baseline scored against an
independent draw of itself gives a ratio of about 1."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
from husai.core import make_generator
from husai.sae import SAEConfig
from husai.stability import Weights, pairwise
from husai.baselines import baseline_pool, subspace_rank, _pca, _unit_rows

METRICS = ('mmcs', 'hungarian_mcc', 'shared_fraction')

def low_rank(d=48, r=8, n=3000, seed=0):
    g = make_generator(seed)
    sv = torch.linspace(4, 0.5, r) ** 1.5
    return (torch.randn(n, r, generator=g) * sv) @ torch.linalg.qr(torch.randn(d, r, generator=g))[0].T

def stable(acts, n_live, d_sae, seeds, live_seed=99):
    "Live rows identical across seeds (in the data's subspace), dead rows random per seed; encoders tied."
    d = acts.shape[1]; r = subspace_rank(acts); V = _pca(acts)[1][:, :r].float()
    live = _unit_rows(torch.randn(n_live, r, generator=make_generator(live_seed)) @ V.T)
    out = []
    for s in seeds:
        W = torch.cat([live, _unit_rows(torch.randn(d_sae - n_live, d, generator=make_generator(1000 + s)))])
        out.append(Weights(W, W.T.contiguous()))
    return out

def score(saes, m): return pairwise(saes, m).values.mean()

def draws(kind, acts, d_sae, n_live, m, alive_only=False, n=3):
    cfg = SAEConfig('topk', d_in=acts.shape[1], d_sae=d_sae, k=4, b_dec_init='zeros')
    v = [score(baseline_pool(kind, acts.shape[1], d_sae, range(10 * i, 10 * i + 4), acts=acts, alive=n_live,
                             alive_only=alive_only, sae_cfg=cfg), m) for i in range(n)]
    return float(np.mean(v)), float(np.std(v))

@pytest.mark.parametrize('kind', ['isotropic', 'subspace', 'untrained'])
@pytest.mark.parametrize('metric', METRICS)
def test_a_stable_dictionary_beats_every_baseline(kind, metric):
    acts = low_rank(); d_sae, n_live = 128, 28
    s_all = score(stable(acts, n_live, d_sae, range(4)), metric)
    b, sd = draws(kind, acts, d_sae, n_live, metric)
    assert s_all > b + max(5 * sd, 0.01), (s_all, b, sd)
    if kind != 'untrained':                                    # over alive latents, against the alive-only pool
        s_alive = score([Weights(w.W_dec[:n_live], w.W_enc[:, :n_live]) for w in stable(acts, n_live, d_sae, range(4))], metric)
        b_alive, _ = draws(kind, acts, d_sae, n_live, metric, alive_only=True)
        assert s_alive == pytest.approx(1.0, abs=1e-5) and s_alive > 1.1 * b_alive, (s_alive, b_alive)

@pytest.mark.parametrize('kind', ['isotropic', 'subspace', 'untrained'])
def test_the_baseline_against_itself_is_a_null(kind):
    acts = low_rank()
    for m in ('mmcs', 'hungarian_mcc'):
        a, _ = draws(kind, acts, 96, 30, m, n=1)
        cfg = SAEConfig('topk', d_in=48, d_sae=96, k=4, b_dec_init='zeros')
        b = score(baseline_pool(kind, 48, 96, range(500, 504), acts=acts, alive=30, sae_cfg=cfg), m)
        assert a / b == pytest.approx(1.0, abs=0.03)

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(12, 40), r=st.integers(4, 10), live_frac=st.floats(0.25, 0.6), seed=st.integers(0, 1000))
def test_property_stable_above_subspace_pool(d, r, live_frac, seed):
    """Whatever the width, rank and alive fraction: identical live latents beat the alive-matched subspace pool, over all
    latents and (by 5% or more) over the alive ones. Not when live latents outnumber the subspace's dimensions many times
    over (random directions in a 2-d subspace already each have a near-identical partner among 30: nothing beats that;
    the baselines notebook says so), nor with a handful of live latents among many dead ones over all latents (the dead
    rows' noise is then larger than what the live ones add): the sizes are drawn outside those corners."""
    r = min(r, d - 1); acts = low_rank(d=d, r=r, n=800, seed=seed); d_sae = 64
    n_live = min(int(live_frac * d_sae), 6 * subspace_rank(acts))
    st_saes = stable(acts, n_live, d_sae, range(3), live_seed=seed)
    b = score(baseline_pool('subspace', d, d_sae, range(3), acts=acts, alive=n_live), 'mmcs')
    b_alive = score(baseline_pool('subspace', d, d_sae, range(3), acts=acts, alive=n_live, alive_only=True), 'mmcs')
    assert score(st_saes, 'mmcs') > b
    assert score([Weights(w.W_dec[:n_live]) for w in st_saes], 'mmcs') > 1.05 * b_alive
