"""The statistics helpers findings 03, 04 and 06 use: `husai.stats.rank_correlation` (03: Spearman / partial Spearman
over models with a Fisher-z interval and a permutation p) and `husai.stats.jackknife_t` (04, 06: the seed jackknife of
any function of seed-by-seed matrices), both moved from the notebooks into the library, and `plateau`, 04's own
(read from its notebook cell and executed on its own, so the test checks the code the finding runs).

Checked against independent expectations: scipy, the textbook partial-correlation formula, analytic curves, and
coverage / null-rejection rates in simulation."""
import json, math
from pathlib import Path
import numpy as np
import pytest
from scipy import stats as sps
from husai.stats import seed_interval

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT/'nbs'/'findings'

def _cell_with(nb: str, name: str) -> str:
    cells = json.loads((FINDINGS/nb).read_text())['cells']
    hits = [''.join(c['source']) for c in cells if c['cell_type'] == 'code' and f'def {name}(' in ''.join(c['source'])]
    assert len(hits) == 1, f"{nb}: {len(hits)} cells define {name}"
    return hits[0]

def helpers(nb: str, *names) -> dict:
    "Execute the cells of finding `nb` that define `names` (each on its own, in one fresh namespace)."
    ns = {}
    for src in dict.fromkeys(_cell_with(nb, n) for n in names): exec(compile(src, f'{nb}:{names}', 'exec'), ns)
    return ns

@pytest.fixture(scope='module')
def rc():
    from husai.stats import rank_correlation
    return rank_correlation

@pytest.fixture(scope='module')
def jk():
    from husai.stats import jackknife_t, pair_mean
    return jackknife_t, pair_mean

# --- rank_correlation ---------------------------------------------------------------------------------------------
def test_rank_correlation_is_spearman_without_covariates(rc):
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.normal(size=15); y = x + rng.normal(size=15)
        assert rc(x, y, n_perm=99)['rho'] == pytest.approx(sps.spearmanr(x, y)[0], abs=1e-12)

def test_partial_rank_correlation_matches_the_textbook_formula(rc):
    "One covariate: (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)) on Spearman correlations."
    rng = np.random.default_rng(1)
    for _ in range(20):
        z = rng.normal(size=25); x = z + rng.normal(size=25); y = z + 0.5 * x + rng.normal(size=25)
        rxy, rxz, ryz = (sps.spearmanr(a, b)[0] for a, b in ((x, y), (x, z), (y, z)))
        want = (rxy - rxz * ryz) / math.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
        assert rc(x, y, z, n_perm=99)['rho'] == pytest.approx(want, abs=1e-12)

def test_a_covariate_that_explains_both_removes_the_correlation(rc):
    rng = np.random.default_rng(2); z = rng.normal(size=40)
    x, y = z + 0.1 * rng.normal(size=40), z + 0.1 * rng.normal(size=40)
    assert rc(x, y, n_perm=99)['rho'] > 0.9 and abs(rc(x, y, z, n_perm=99)['rho']) < 0.5

def test_fisher_interval_covers_the_true_spearman_rho(rc):
    "Bivariate normal, rho 0.6, 12 models: the population Spearman rho is (6/pi) asin(rho/2); the 95% interval covers it ~95%."
    rng = np.random.default_rng(3); rho, n, sims = 0.6, 12, 600
    true = 6 / math.pi * math.asin(rho / 2)
    cov = np.array([[1, rho], [rho, 1]]); hits = 0
    for _ in range(sims):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        r = rc(x, y, n_perm=9)
        hits += r['ci_low'] <= true <= r['ci_high']
    assert 0.91 <= hits / sims <= 0.99

def test_permutation_p_rejects_at_its_level_under_the_null(rc):
    rng = np.random.default_rng(4); sims = 300
    rej = sum(rc(rng.normal(size=12), rng.normal(size=12), n_perm=199, seed=i)['p_value'] <= 0.05 for i in range(sims))
    assert 0.02 <= rej / sims <= 0.09

def test_permutation_p_is_small_for_a_strong_correlation(rc):
    x = np.arange(12.0); assert rc(x, x ** 2, n_perm=999)['p_value'] <= 0.002

def test_rank_correlation_degenerate_cases(rc):
    r = rc(np.arange(10.0), np.ones(10))               # a constant side: no correlation
    assert math.isnan(r['rho']) and r['p_value'] is None
    r = rc(np.arange(4.0), np.arange(4.0) ** 3, covariates=np.arange(4.0) % 2)   # n - 3 - k < 1: no interval
    assert math.isnan(r['ci_low']) and r['n'] == 4 and r['k'] == 1

# --- jackknife_t --------------------------------------------------------------------------------------------------
def test_jackknife_t_of_one_pair_mean_is_the_librarys_seed_interval(jk):
    f, pm = jk
    rng = np.random.default_rng(5)
    for S in (3, 5, 8):
        M = rng.normal(size=(S, S)); M = M + M.T
        got, want = f(pm, M), seed_interval(M)
        for k in ('mean', 'se', 'ci_low', 'ci_high'): assert got[k] == pytest.approx(want[k], abs=1e-12)

def _pairs(rng, S, mu, sd_seed, sd_pair):
    u = rng.normal(scale=sd_seed, size=S)
    M = mu + u[:, None] + u[None, :] + rng.normal(scale=sd_pair, size=(S, S))
    return (M + M.T) / 2

def test_jackknife_t_covers_a_difference_of_ratios(jk):
    "Two independently trained sets, each against its own baseline (all seed matrices): the interval covers the true difference."
    f, pm = jk
    rng = np.random.default_rng(6); S, sims, hits = 5, 400, 0
    g = lambda Ma, Ba, Mb, Bb: pm(Ma) / pm(Ba) - pm(Mb) / pm(Bb)
    true = 0.55 / 0.40 - 0.50 / 0.42
    for _ in range(sims):
        r = f(g, _pairs(rng, S, 0.55, 0.02, 0.01), _pairs(rng, S, 0.40, 0.01, 0.01),
              _pairs(rng, S, 0.50, 0.02, 0.01), _pairs(rng, S, 0.42, 0.01, 0.01))
        hits += r['ci_low'] <= true <= r['ci_high']
    assert 0.90 <= hits / sims <= 1.0

def test_jackknife_t_needs_three_seeds(jk):
    f, pm = jk
    r = f(pm, np.ones((2, 2)))
    assert r['mean'] == 1.0 and math.isnan(r['ci_low'])

def test_no_finding_keeps_its_own_copy():
    "04 and 06 once carried copies of `jackknife_t` and 03 of `rank_correlation`; they now import the library's."
    for nb, name in (('04_training_dynamics.ipynb', 'jackknife_t'), ('06_sparsity_architecture.ipynb', 'jackknife_t'),
                     ('03_model_quality.ipynb', 'rank_correlation'), ('04_training_dynamics.ipynb', 'pair_mean')):
        code = '\n'.join(''.join(c['source']) for c in json.loads((FINDINGS/nb).read_text())['cells'] if c['cell_type'] == 'code')
        assert f'def {name}(' not in code and f'{name}(' in code, (nb, name)

# --- plateau ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def plateau(): return helpers('04_training_dynamics.ipynb', 'plateau')['plateau']

def test_plateau_of_an_exponential_approach_settles_where_the_analysis_says(plateau):
    "y = 1 - exp(-t / tau) on a grid: it stays within 2% of its range from its final value from the first t where that holds."
    steps = np.arange(0, 12_001, 500); tau = 1500.0
    y = 1 - np.exp(-steps / tau)
    span = y[-1] - y[0]
    want = steps[np.argmax(np.abs(y - y[-1]) <= 0.02 * span)]        # monotone curve: the first point within the band
    p = plateau(steps, y)
    assert p['settled_step'] == want and p['plateaued']
    assert p['total_change'] == pytest.approx(span) and p['tail_change'] == pytest.approx(y[-1] - y[np.searchsorted(steps, 9000)])

def test_plateau_of_a_ramp_is_never_reached(plateau):
    steps = np.arange(0, 10_001, 1000); p = plateau(steps, 0.3 + 1e-5 * steps)
    assert not p['plateaued'] and p['settled_step'] == 10_000

def test_plateau_counts_a_late_bump(plateau):
    "A curve that settles, then moves again in its last quarter, has not plateaued, and settles only after the bump."
    steps = np.arange(0, 8001, 1000); y = np.array([0, 5, 9, 10, 10, 10, 10, 11, 11.0])
    p = plateau(steps, y)
    assert not p['plateaued'] and p['settled_step'] == 7000

def test_plateau_judges_the_tail_on_at_least_two_points(plateau):
    "Sparse checkpoints: the last quarter holds one point only, so the tail is the last two (one point cannot show a change)."
    p = plateau([0, 100, 200, 1000], [0.0, 1.0, 2.0, 2.5])
    assert not p['plateaued'] and p['tail_change'] == pytest.approx(0.5)
