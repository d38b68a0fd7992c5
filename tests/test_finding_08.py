"""What finding 08 (a real language model) takes from the library, checked against independent computations: the
difference of two independent seed sets with its interval (`husai.stats.seed_difference`, written out by hand here)
and the change of units (`husai.experiment.unit_scale`); and that the notebook still uses them rather than copies."""
import json, math
from pathlib import Path
import numpy as np
import pytest
import torch
from scipy import stats as sps

NB = Path(__file__).resolve().parents[1]/'nbs'/'findings'/'08_real_language_model.ipynb'

@pytest.fixture(scope='module')
def nb():
    from husai.stats import seed_difference
    from husai.experiment import unit_scale
    return {'difference': seed_difference, 'unit_scaled': lambda x: unit_scale(x)[0]}

def test_the_notebook_uses_the_library_not_a_copy():
    code = '\n'.join(''.join(c['source']) for c in json.loads(NB.read_text())['cells'] if c['cell_type'] == 'code')
    assert 'seed_difference(' in code and 'unit_scale(' in code
    assert 'def difference' not in code and 'def unit_scaled' not in code

def _pairs_mean(M):
    S = len(M); return np.mean([M[i][j] for i in range(S) for j in range(i + 1, S)])

def _jackknife_se(M):
    "Leave-one-seed-out jackknife standard error of the mean over seed pairs, written out."
    S = len(M); loo = []
    for i in range(S):
        keep = [j for j in range(S) if j != i]
        loo.append(_pairs_mean(M[np.ix_(keep, keep)]))
    loo = np.array(loo); return math.sqrt((S - 1) / S * ((loo - loo.mean()) ** 2).sum())

def _sym(rng, S, mu):
    A = rng.normal(mu, 0.05, (S, S)); A = (A + A.T) / 2; np.fill_diagonal(A, 1.0); return A

@pytest.mark.parametrize('S', [3, 5, 8])
def test_difference_matches_a_written_out_jackknife_and_t(nb, S):
    rng = np.random.default_rng(S)
    A, B = _sym(rng, S, 0.6), _sym(rng, S, 0.5)
    d = nb['difference'](A, B)
    se = math.hypot(_jackknife_se(A), _jackknife_se(B))
    assert d['estimate'] == pytest.approx(_pairs_mean(A) - _pairs_mean(B))
    assert d['se'] == pytest.approx(se)
    h = sps.t.ppf(0.975, S - 1) * se
    assert (d['lo'], d['hi']) == pytest.approx((d['estimate'] - h, d['estimate'] + h))

def test_difference_of_a_set_with_itself_is_zero_and_antisymmetric(nb):
    rng = np.random.default_rng(0); A, B = _sym(rng, 5, 0.3), _sym(rng, 5, 0.7)
    assert nb['difference'](A, A)['estimate'] == 0
    ab, ba = nb['difference'](A, B), nb['difference'](B, A)
    assert ab['estimate'] == pytest.approx(-ba['estimate']) and ab['se'] == pytest.approx(ba['se'])

def test_unit_scaled_keeps_directions_and_sets_the_mean_square_norm(nb):
    x = torch.randn(500, 24, dtype=torch.float32) * 7.3 + 2.0
    y = nb['unit_scaled'](x)
    assert float(y.double().pow(2).sum(1).mean()) == pytest.approx(24, rel=1e-5)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-6)
    assert y.dtype == torch.float32
