"""Seed-level statistics: the bootstrap resamples seeds, the permutation test is exact where it says so."""
import math
from itertools import combinations
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.stats import seed_bootstrap, permutation_test, seeds_statement
from husai.stability import Weights, pairwise

def sym(S, seed=0, loc=0.9, scale=0.01):
    rng = np.random.default_rng(seed)
    M = loc + scale * rng.standard_normal((S, S)); M = (M + M.T) / 2; np.fill_diagonal(M, np.nan)
    return M

def test_bootstrap_mean_and_coverage_of_constant():
    M = np.full((5, 5), 0.8); np.fill_diagonal(M, np.nan)
    b = seed_bootstrap(M)
    assert b['mean'] == pytest.approx(0.8) and b['ci_low'] == pytest.approx(0.8) and b['ci_high'] == pytest.approx(0.8)
    assert b['n_seeds'] == 5 and b['n_pairs'] == 10

def test_bootstrap_resamples_seeds_not_pairs():
    "Reference: a plain loop that draws seeds and averages all pairs of distinct draws."
    M = sym(6, seed=3, scale=0.1)
    b = seed_bootstrap(M, n_boot=500, seed=7)
    rng = np.random.default_rng(7); idx = rng.integers(0, 6, size=(500, 6)); stats = []
    for row in idx:
        v = [M[row[i], row[j]] for i in range(6) for j in range(i + 1, 6) if row[i] != row[j]]
        if v: stats.append(np.mean(v))
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert b['ci_low'] == pytest.approx(lo) and b['ci_high'] == pytest.approx(hi)

def test_outlier_seed_widens_interval_beyond_pair_bootstrap():
    M = sym(5, seed=1); M[0, 1:] = M[1:, 0] = 0.6
    b = seed_bootstrap(M)
    vals = M[np.triu_indices(5, 1)]; rng = np.random.default_rng(0)
    naive = np.quantile([rng.choice(vals, 10).mean() for _ in range(2000)], [0.025, 0.975])
    assert b['ci_high'] - b['ci_low'] > naive[1] - naive[0]

def test_too_few_seeds_gives_no_interval():
    b = seed_bootstrap(sym(2))
    assert math.isnan(b['ci_low']) and math.isnan(b['ci_high']) and 'at least 3' in b['note']
    with pytest.raises(HusaiError): seed_bootstrap(np.zeros((2, 3)))

def test_permutation_test_exact_enumeration():
    M = sym(6, seed=0, loc=0.2); M[:3, :3] = 0.95; np.fill_diagonal(M, np.nan)   # group a (first 3) alike
    t = permutation_test(M, 3)
    assert t['exact'] and t['n_permutations'] == math.comb(6, 3)
    assert t['p_value'] == pytest.approx(1 / 20)
    # reference: enumerate by hand
    def stat(a):
        b = [i for i in range(6) if i not in a]
        return np.mean([M[i, j] for i, j in combinations(a, 2)]) - np.mean([M[i, j] for i, j in combinations(b, 2)])
    null = [stat(a) for a in combinations(range(6), 3)]
    assert t['statistic'] == pytest.approx(stat((0, 1, 2)))
    assert t['p_value'] == pytest.approx(np.mean(np.array(null) >= stat((0, 1, 2)) - 1e-12))
    assert permutation_test(M, 3, alternative='less')['p_value'] == pytest.approx(1.0)

def test_permutation_test_monte_carlo_and_null_uniformity():
    M = sym(16, seed=2)
    t = permutation_test(M, 8, n_perm=500)
    assert not t['exact'] and 0 < t['p_value'] <= 1 and t['n_permutations'] == 500
    # under the null, p-values are roughly uniform: not concentrated near 0
    ps = [permutation_test(sym(8, seed=s), 4)['p_value'] for s in range(40)]
    assert 0.02 < np.mean(np.array(ps) < 0.25) < 0.5
    with pytest.raises(HusaiError, match='at least 2'): permutation_test(M, 1)
