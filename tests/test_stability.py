"""Stability metrics against independent expectations: naive full-matrix references, exact optima, symmetry."""
import itertools
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import linear_sum_assignment
from husai.core import HusaiError
from husai.stability import (Weights, decoder_rows, encoder_rows, split_seeds, max_cos, mmcs, match, hungarian_mcc,
                             shared_fraction, pairwise, DENSE_CELLS)
from husai import stability as S

def rnd(m, d, seed, dtype=torch.float32):
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)

def unit(W): W = W.double(); return W / W.norm(dim=1, keepdim=True)

def naive_mmcs(A, B):
    C = (unit(A) @ unit(B).T).abs()
    return 0.5 * (C.max(1).values.mean() + C.max(0).values.mean()).item()

def brute_mcc(A, B):
    "Best one-to-one assignment by enumerating all permutations (tiny sizes only)."
    C = (unit(A) @ unit(B).T).numpy()
    m1, m2 = C.shape
    if m1 <= m2: return max(np.mean([C[i, p[i]] for i in range(m1)]) for p in itertools.permutations(range(m2), m1))
    return brute_mcc(B, A)

def test_identical_is_one():
    D = rnd(50, 20, 0)
    assert mmcs(D, D) == pytest.approx(1, abs=1e-6)
    assert hungarian_mcc(D, D) == pytest.approx(1, abs=1e-9)
    s = Weights(D, rnd(50, 20, 1).T)
    assert shared_fraction(s, s) == 1.0

def test_permuted_sign_flipped_copy():
    Q = torch.linalg.qr(rnd(16, 16, 2, torch.float64))[0][:10]     # orthonormal rows
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    s = torch.ones(10, dtype=torch.float64); s[[1, 4, 7, 8]] = -1   # 4 of 10 flipped
    copy = (s[:, None] * Q)[perm]
    assert mmcs(Q, copy) == pytest.approx(1, abs=1e-9)                       # mmcs ignores sign
    assert hungarian_mcc(Q, copy) == pytest.approx(0.6, abs=1e-9)            # documented: 1 - flipped fraction
    assert hungarian_mcc(Q, copy, signed=False) == pytest.approx(1, abs=1e-9)
    restored = copy * s[perm][:, None]
    assert hungarian_mcc(Q, restored) == pytest.approx(1, abs=1e-9)

@pytest.mark.parametrize('m1,m2', [(5, 5), (4, 6), (6, 4)])
def test_hungarian_equals_brute_force(m1, m2):
    A, B = rnd(m1, 3, 3), rnd(m2, 3, 4)
    assert hungarian_mcc(A, B) == pytest.approx(brute_mcc(A, B), abs=1e-9)
    assert hungarian_mcc(A, B) == pytest.approx(hungarian_mcc(B, A), abs=1e-12)

def test_mmcs_chunked_equals_naive_and_symmetric():
    A, B = rnd(300, 24, 5), rnd(170, 24, 6)
    ref = naive_mmcs(A, B)
    for budget in (4, 4 * 37, 4 * 300, 4 * 300 * 170, 2**30):
        assert mmcs(A, B, budget=budget) == pytest.approx(ref, abs=1e-6)
    assert mmcs(A, B) == pytest.approx(mmcs(B, A), abs=1e-7)
    d = mmcs(A, B, detail=True)
    C = (unit(A) @ unit(B).T).abs()
    assert d['a_to_b'] == pytest.approx(C.max(1).values.mean().item(), abs=1e-6)
    assert d['b_to_a'] == pytest.approx(C.max(0).values.mean().item(), abs=1e-6)

def test_max_cos_signed():
    A, B = rnd(40, 8, 7), rnd(30, 8, 8)
    ra, cb = max_cos(A, B, absolute=False, budget=4 * 10)
    C = unit(A) @ unit(B).T
    assert torch.allclose(ra.double(), C.max(1).values, atol=1e-6) and torch.allclose(cb.double(), C.max(0).values, atol=1e-6)

@pytest.mark.parametrize('m1,m2', [(400, 400), (300, 420), (420, 300)])
def test_sparse_matching_equals_dense(m1, m2):
    A, B = rnd(m1, 32, 9), rnd(m2, 32, 10)
    n = min(m1, m2) * 2 // 3
    B[:n] = A[:n] + 0.3 * rnd(n, 32, 11)
    dense, sparse = match(A, B, method='dense'), match(A, B, method='sparse', k=64, budget=64 * 1024)
    assert sparse.method == 'sparse' and dense.exact
    assert sparse.mean == pytest.approx(dense.mean, abs=1e-6)
    assert sparse.mean <= sparse.upper_bound + 1e-9 and dense.mean <= sparse.upper_bound + 1e-9
    assert len(set(sparse.cols.tolist())) == len(sparse.cols) == min(m1, m2)

def test_sparse_matching_exact_flag_on_shared_dictionary():
    "When the two dictionaries are near-permutations of each other, the bound is reached: provably exact."
    A = rnd(500, 64, 12); B = A[torch.randperm(500, generator=torch.Generator().manual_seed(1))] + 0.01 * rnd(500, 64, 13)
    m = match(A, B, method='sparse', k=4)
    assert m.exact and m.mean == pytest.approx(match(A, B, method='dense').mean, abs=1e-6)

def test_auto_switches_to_sparse_above_memory_limit():
    A, B = rnd(100, 16, 14), rnd(100, 16, 15)
    assert match(A, B).method == 'dense'
    assert match(A, B, max_dense=100 * 100 * 8 - 1).method == 'sparse'

def test_shared_fraction_known_value_and_detail():
    g = torch.Generator().manual_seed(0)
    dec, enc = rnd(64, 32, 20), rnd(64, 32, 21)
    dec2, enc2 = rnd(64, 32, 22), rnd(64, 32, 23)
    dec2[:30], enc2[:30] = dec[:30], enc[:30]          # 30 latents shared in both matrices
    enc2[30:40] = enc[30:40]                          # 10 more share only the encoder
    p = torch.randperm(64, generator=g)
    s1, s2 = Weights(dec, enc.T), Weights(dec2[p], enc2[p].T)
    d = shared_fraction(s1, s2, detail=True)
    assert d['shared_fraction'] == pytest.approx(30 / 64)
    assert d['decoder_only'] == pytest.approx(30 / 64)
    assert d['agree'] >= 30 / 64
    assert shared_fraction(s2, s1) == d['shared_fraction']
    assert shared_fraction(s1, s2, threshold=0.999) == pytest.approx(30 / 64)

def test_inputs_objects_dicts_batches_numpy():
    W = rnd(3 * 12, 6, 30).reshape(3, 12, 6)
    E = rnd(3 * 6, 12, 31).reshape(3, 6, 12)
    batch = Weights(W, E)
    ws = split_seeds(batch)
    assert len(ws) == 3 and torch.equal(decoder_rows(ws[1]), W[1]) and torch.equal(encoder_rows(ws[1]), E[1].T)
    assert len(split_seeds(W)) == 3
    v = mmcs(W[0].numpy(), {'W_dec': W[1]})
    assert v == pytest.approx(mmcs(W[0], W[1]), abs=1e-7)
    with pytest.raises(HusaiError, match='needs encoders'): shared_fraction(W[0], W[1])
    with pytest.raises(HusaiError, match='d_in'): mmcs(W[0], rnd(12, 7, 0))
    with pytest.raises(HusaiError, match='2-d'): mmcs(W, W[0])

def test_pairwise_matrix_and_table():
    saes = Weights(rnd(4 * 20, 8, 40).reshape(4, 20, 8), rnd(4 * 8, 20, 41).reshape(4, 8, 20))
    for metric in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        pw = pairwise(saes, metric, names=list('abcd'))
        assert np.isnan(np.diag(pw.matrix)).all()
        assert np.array_equal(pw.matrix, pw.matrix.T, equal_nan=True)
        assert len(pw.table) == 6 and pw.table[0]['a'] == 'a' and pw.table[0]['b'] == 'b'
        assert pw.values.shape == (6,)
    pw = pairwise(saes, lambda x, y: 0.5)
    assert (pw.values == 0.5).all()
    with pytest.raises(HusaiError, match='unknown metric'): pairwise(saes, 'pwmcc')

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_tensors_match_cpu():
    A, B = rnd(500, 64, 50), rnd(400, 64, 51)
    assert mmcs(A.cuda(), B.cuda()) == pytest.approx(mmcs(A, B), abs=1e-5)
    assert hungarian_mcc(A.cuda(), B.cuda()) == pytest.approx(hungarian_mcc(A, B), abs=1e-6)
    assert hungarian_mcc(A.cuda(), B.cuda(), method='sparse', k=64) == pytest.approx(hungarian_mcc(A, B), abs=1e-5)

@settings(max_examples=25, deadline=None)
@given(m1=st.integers(1, 12), m2=st.integers(1, 12), d=st.integers(2, 6), seed=st.integers(0, 10_000),
       budget=st.integers(4, 400))
def test_property_mmcs_blocked_and_bounds(m1, m2, d, seed, budget):
    A, B = rnd(m1, d, seed), rnd(m2, d, seed + 1)
    v = mmcs(A, B, budget=budget)
    assert v == pytest.approx(naive_mmcs(A, B), abs=1e-6)
    assert 0 <= v <= 1 + 1e-6
    h = hungarian_mcc(A, B)
    assert -1 - 1e-9 <= h <= 1 + 1e-9
    C = (unit(A) @ unit(B).T).numpy()
    r, c = linear_sum_assignment(C, maximize=True)
    assert h == pytest.approx(C[r, c].mean(), abs=1e-9)
    dd = mmcs(A, B, budget=budget, detail=True)                # matched signed cosines never beat each row's best |cos|
    assert h <= (dd['a_to_b'] if m1 <= m2 else dd['b_to_a']) + 1e-6

@settings(max_examples=15, deadline=None)
@given(m=st.integers(2, 40), seed=st.integers(0, 10_000))
def test_property_sparse_with_all_candidates_is_exact(m, seed):
    A, B = rnd(m, 5, seed), rnd(m + seed % 3, 5, seed + 7)
    sp = match(A, B, method='sparse', k=max(len(A), len(B)))
    assert sp.mean == pytest.approx(match(A, B, method='dense').mean, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# The certified sparse matching (issue 15): optimal, with a proof, against scipy's dense solver

def dense_opt(A, B, absolute=False):
    C = (unit(A) @ unit(B).T).numpy()
    if absolute: C = np.abs(C)
    r, c = linear_sum_assignment(C, maximize=True)
    return C[r, c].mean()

def assert_certified(A, B, **kw):
    "The sparse matching is one-to-one, proved exact, and equals the dense optimum; its bound is a bound."
    for signed in (True, False):
        m = match(A, B, method='sparse', signed=signed, **kw)
        ref = dense_opt(A, B, absolute=not signed)
        n = min(len(A), len(B))
        assert m.method == 'sparse' and m.exact and m.gap <= 1e-9
        assert m.mean == pytest.approx(ref, abs=1e-9)
        assert m.upper_bound >= ref - 1e-12                    # a proved upper bound is above the true optimum
        assert len(set(m.rows.tolist())) == len(set(m.cols.tolist())) == len(m.cos) == n
        C = (unit(A) @ unit(B).T).numpy()
        assert np.allclose(m.cos, np.abs(C[m.rows, m.cols]) if not signed else C[m.rows, m.cols], atol=1e-12)

def hard_cases():
    g = torch.Generator().manual_seed(7)
    r = lambda m, d: torch.randn(m, d, generator=g)
    A = r(500, 32); B = r(500, 32); B[:330] = A[:330] + 0.3 * r(330, 32)
    yield 'shared, k=4 (top-k alone not optimal)', A, B, dict(k=4)
    Q = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=torch.float64))[0]
    yield 'near ties (orthonormal + 1e-9)', Q[:60], Q[torch.randperm(64, generator=g)[:60]] + 1e-9 * torch.randn(60, 64, generator=g, dtype=torch.float64), dict(k=4)
    D = r(20, 8)
    yield 'duplicated rows', D[torch.randint(0, 20, (200,), generator=g)], D[torch.randint(0, 20, (200,), generator=g)], dict(k=4)
    yield 'duplicated rows, rectangular', D[torch.randint(0, 20, (150,), generator=g)], D[torch.randint(0, 20, (210,), generator=g)], dict(k=3)
    yield 'many ties in 3 dims', r(300, 3), r(300, 3), dict(k=8)
    yield 'rectangular 300 x 520', r(300, 16), r(520, 16), dict(k=4)
    yield 'rectangular 520 x 300', r(520, 16), r(300, 16), dict(k=4)
    yield 'bf16 screening', r(700, 64), r(700, 64), dict(k=8, screen='bfloat16')
    yield 'float32 screening', r(700, 64), r(700, 64), dict(k=8, screen='float32')
    yield 'one row', r(1, 5), r(9, 5), dict(k=2)

@pytest.mark.parametrize('name,A,B,kw', list(hard_cases()), ids=[c[0] for c in hard_cases()])
def test_certified_matching_equals_dense_on_hard_cases(name, A, B, kw):
    assert_certified(A, B, **kw)

def test_topk_candidates_alone_are_not_optimal_so_the_certificate_adds_pairs():
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn(600, 32, generator=g), torch.randn(600, 32, generator=g)
    B[:400] = A[:400] + 0.3 * torch.randn(400, 32, generator=g)
    ref = dense_opt(A, B)
    one = match(A, B, method='sparse', k=4, max_rounds=1)          # solve on the top-4 candidates only
    assert one.mean < ref - 1e-6 and not one.exact                 # short of the optimum, and it says so
    assert one.upper_bound >= ref - 1e-12 and one.gap == pytest.approx(one.upper_bound - one.mean, abs=1e-12)
    full = match(A, B, method='sparse', k=4)
    assert full.exact and full.mean == pytest.approx(ref, abs=1e-9)
    assert full.info['rounds'] > 1 and full.info['graph'] > full.info['candidates']

def test_random_dictionaries_are_certified():
    "The old bound (sum of row maxima) never certified unshared latents; the dual certificate does."
    g = torch.Generator().manual_seed(4)
    A, B = torch.randn(800, 48, generator=g), torch.randn(800, 48, generator=g)
    m = match(A, B, method='sparse')
    assert m.exact and m.mean == pytest.approx(dense_opt(A, B), abs=1e-9)
    assert hungarian_mcc(A, B, method='sparse', detail=True)['gap'] <= 1e-9

def test_auto_goes_sparse_above_dense_cells_and_stays_exact():
    g = torch.Generator().manual_seed(5)
    A, B = torch.randn(1100, 16, generator=g), torch.randn(4000, 16, generator=g)
    assert 1100 * 4000 > DENSE_CELLS
    m = match(A, B)
    assert m.method == 'sparse' and m.exact and m.mean == pytest.approx(dense_opt(A, B), abs=1e-9)
    assert match(A[:100], B[:100]).method == 'dense'

@settings(max_examples=40, deadline=None)
@given(m1=st.integers(1, 40), m2=st.integers(1, 40), d=st.integers(2, 8), seed=st.integers(0, 10_000),
       k=st.integers(1, 6), dup=st.booleans(), screen=st.sampled_from(['bfloat16', 'float32']))
def test_property_certified_sparse_equals_dense(m1, m2, d, seed, k, dup, screen):
    A, B = rnd(m1, d, seed), rnd(m2, d, seed + 1)
    if dup:                                                       # many exact ties: rows drawn from a few directions
        base = rnd(3, d, seed + 2)
        A, B = base[torch.arange(m1) % 3], base[torch.arange(m2) % 3] + 0 * B
    assert_certified(A, B, k=k, screen=screen)

@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float32])
@pytest.mark.parametrize('d', [4, 64, 1024])
def test_screening_error_bound_holds(dtype, d):
    "No exact cosine exceeds the lifted screened one (the bound the certificate trusts for unseen pairs)."
    g = torch.Generator().manual_seed(d)
    A, B = torch.randn(700, d, generator=g), torch.randn(900, d, generator=g)
    B[:300] = A[:300] + 0.02 * torch.randn(300, d, generator=g)
    A64, B64 = S._unit64(A, 'cpu'), S._unit64(B, 'cpu')
    C = (A64 @ B64.T).numpy()
    with S._strict_matmul(): Cs = (A64.to(dtype) @ B64.to(dtype).T).double().numpy()
    lift = S._lift_fn(d, dtype)
    assert (C <= lift(Cs)).all() and (np.abs(C) <= lift(np.abs(Cs))).all()

def test_screen_bounds_every_pair_outside_the_candidates():
    g = torch.Generator().manual_seed(6)
    A64, B64 = S._unit64(torch.randn(333, 20, generator=g), 'cpu'), S._unit64(torch.randn(250, 20, generator=g), 'cpu')
    C = (A64 @ B64.T).numpy()
    for ab in (False, True):
        Ce = np.abs(C) if ab else C
        s = S._screen(A64, B64, 6, 50_000, ab, torch.bfloat16)
        outside = np.ones_like(Ce, bool); np.put_along_axis(outside, s.idx, False, 1)
        assert (Ce <= s.row_bound[:, None])[outside].all()
        assert (Ce <= np.repeat(s.gmax, s.g, 0)[:333]).all()

@pytest.mark.parametrize('m1,m2,sparse', [(50, 50, False), (35, 60, False), (1, 9, False), (70, 70, True), (40, 75, True)])
def test_duals_are_feasible_tight_and_signed_right(m1, m2, sparse):
    "Column duals from shortest paths: u + v >= c on the graph, equality on the matching, v >= 0 and 0 where unused if m1 < m2."
    C = np.random.default_rng(m1 + m2).normal(size=(m1, m2))
    keep = (C >= np.sort(C, 1)[:, -3:-2]) | np.eye(m1, m2, dtype=bool) if sparse else np.ones_like(C, bool)
    R, Cc = np.nonzero(keep); c = C[R, Cc]
    mcol = S._lap(m1, m2, R, Cc, c)
    v = S._duals(m1, m2, R, Cc, c, mcol)
    u = C[np.arange(m1), mcol] - v[mcol]
    assert (u[R] + v[Cc] >= c - 1e-12).all()
    assert u.sum() + v.sum() == pytest.approx(C[np.arange(m1), mcol].sum(), abs=1e-9)
    if m1 < m2: assert (v >= 0).all() and (v[np.setdiff1d(np.arange(m2), mcol)] == 0).all()
    if not sparse: assert C[np.arange(m1), mcol].sum() == pytest.approx(C[linear_sum_assignment(C, maximize=True)].sum(), abs=1e-9)

def test_rectangular_bound_needs_nonnegative_column_duals():
    "With m1 < m2, duals with a negative v would 'prove' a bound below the optimum; ours never do."
    g = torch.Generator().manual_seed(8)
    A, B = torch.randn(30, 6, generator=g), torch.randn(90, 6, generator=g)
    m = match(A, B, method='sparse', k=2)
    assert m.exact and m.upper_bound >= dense_opt(A, B) - 1e-12

def test_matching_fields_and_errors():
    A, B = rnd(20, 4, 0), rnd(30, 4, 1)
    d = match(A, B, method='dense')
    assert d.exact and d.gap == 0.0 and d.info is None and d.upper_bound == pytest.approx(d.mean)
    with pytest.raises(HusaiError, match='screen'): match(A, B, method='sparse', screen='fp8')
    with pytest.raises(HusaiError, match='k'): match(A, B, method='sparse', k=0)
    with pytest.raises(HusaiError, match='method'): match(A, B, method='greedy')

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_certified_matching_equals_cpu():
    g = torch.Generator().manual_seed(9)
    A, B = torch.randn(3000, 64, generator=g), torch.randn(3000, 64, generator=g)
    B[:2000] = A[:2000] + 0.3 * torch.randn(2000, 64, generator=g)
    c, gpu = match(A, B, method='sparse'), match(A.cuda(), B.cuda(), method='sparse')
    assert gpu.exact and gpu.mean == pytest.approx(c.mean, abs=1e-9)

# ---------------------------------------------------------------------------------------------
# activation_match: latents matched by the correlation of their activations, against a naive dense computation

from husai.stability import activation_match

def act_pair(d_in=20, m_a=80, m_b=80, k=5, n_copy=50, dead_a=(), dead_b=(), seed=0):
    "Two TopK SAEs (separate objects); b copies n_copy of a's latents (encoder and decoder) in another order."
    from husai.sae import SAEConfig, init_saes
    g = torch.Generator().manual_seed(seed)
    a = init_saes(SAEConfig(arch='topk', d_in=d_in, d_sae=m_a, k=k), [seed])
    b = init_saes(SAEConfig(arch='topk', d_in=d_in, d_sae=m_b, k=k), [seed + 1])
    with torch.no_grad():
        p = torch.randperm(m_a, generator=g)[:n_copy]
        b.W_enc[0, :, :n_copy] = a.W_enc[0][:, p]; b.W_dec[0, :n_copy] = a.W_dec[0, p]; b.b_enc[0, :n_copy] = a.b_enc[0, p]
        for i in dead_a: a.b_enc[0, i] = -1e4
        for i in dead_b: b.b_enc[0, i] = -1e4
    return a, b, torch.randn(2500, d_in, generator=g)

def naive_act_match(a, b, X, absolute=False):
    Za, Zb = a.encode(X)[0].detach().double().numpy(), b.encode(X)[0].detach().double().numpy()
    la, lb = np.flatnonzero(Za.std(0) > 0), np.flatnonzero(Zb.std(0) > 0)
    R = np.corrcoef(Za[:, la].T, Zb[:, lb].T)[:len(la), len(la):]
    if absolute: R = np.abs(R)
    r, c = linear_sum_assignment(R, maximize=True)
    return R[r, c].mean(), la, lb, dict(zip(la[r], lb[c]))

@pytest.mark.parametrize('m_b,k,budget,signed', [(80, 32, 2**26, True), (80, 1, 8 * 80 * 17, True),
                                                  (110, 4, 8 * 110 * 20, False), (60, 3, 2**26, True)])
def test_activation_match_equals_naive_dense(m_b, k, budget, signed):
    a, b, X = act_pair(m_b=m_b, n_copy=min(50, m_b), dead_a=(3, 70), dead_b=(m_b - 1,))
    am = activation_match(a, b, X, batch=600, k=k, budget=budget, signed=signed)
    ref, la, lb, partners = naive_act_match(a, b, X, absolute=not signed)
    assert am.matching.exact and am.matching.mean == pytest.approx(ref, abs=1e-9)
    assert list(am.dead_a) == [3, 70] and list(am.dead_b) == [m_b - 1] and am.n_tokens == 2500
    if k == 1: assert am.matching.info['exact_values'] > am.matching.info['candidates']   # pairs beyond the screen were needed
    assert len(am.matching.cos) == min(len(la), len(lb)) and set(am.matching.rows) <= set(la) and set(am.matching.cols) <= set(lb)
    got = dict(zip(am.matching.rows.tolist(), am.matching.cols.tolist()))
    assert np.mean([got[i] == partners[i] for i in got if i in partners]) > 0.95     # same partners (up to ties)
    d = match(a.W_dec[0].detach(), b.W_dec[0].detach())
    dp = dict(zip(d.rows.tolist(), d.cols.tolist()))
    assert am.n_agree == sum(dp.get(i) == j for i, j in got.items()) and am.agreement == pytest.approx(am.n_agree / len(got))

def test_activation_match_inputs_weights_batches_and_errors():
    from husai.io import weights_from_saes
    a, b, X = act_pair(dead_b=(5,))
    ref = activation_match(a, b, X)
    w = activation_match(weights_from_saes(a, 0), weights_from_saes(b, 0), list(X.split(512)), decoder=False)
    assert w.matching.mean == pytest.approx(ref.matching.mean, abs=1e-9) and w.decoder is None and np.isnan(w.agreement)
    f = activation_match(a, b, lambda: iter(X.numpy()[i:i + 300] for i in range(0, 2500, 300)))
    assert f.matching.mean == pytest.approx(ref.matching.mean, abs=1e-9)
    with pytest.raises(HusaiError, match='fresh iterator'): activation_match(a, b, iter(X.split(500)))
    lens = iter([2500, 2000, 2000, 2000])
    with pytest.raises(HusaiError, match='re-read'): activation_match(a, b, lambda: iter(X[:next(lens)].split(500)))
    with pytest.raises(HusaiError, match='NaN'): activation_match(a, b, torch.full((10, 20), float('nan')))
    with pytest.raises(HusaiError, match='cannot encode'): activation_match(a.W_dec[0], b, X)
    dead, _, _ = act_pair(dead_a=range(80))
    with pytest.raises(HusaiError, match='no latent of a fires'): activation_match(dead, b, X)

# ---------------------------------------------------------------------------------------------
# stability_pair: the three metrics from two passes, mmcs exact from the decoder matching's screen

from husai.stability import stability_pair

@pytest.mark.parametrize('m1,m2,screen', [(2500, 2500, 'bfloat16'), (2100, 3000, 'float32'), (3000, 2100, 'bfloat16')])
def test_stability_pair_equals_the_three_metrics(m1, m2, screen):
    g = torch.Generator().manual_seed(m1 + m2)
    d1, e1 = torch.randn(m1, 24, generator=g), torch.randn(m1, 24, generator=g)
    d2, e2 = torch.randn(m2, 24, generator=g), torch.randn(m2, 24, generator=g)
    n = min(m1, m2) // 2
    d2[:n] = -(d1[:n] + 0.3 * torch.randn(n, 24, generator=g))         # strongest cosines negative for some latents
    e2[:n] = e1[:n] + 0.3 * torch.randn(n, 24, generator=g)
    s1, s2 = Weights(d1, e1.T), Weights(d2, e2.T)
    sp = stability_pair(s1, s2, screen=screen)
    C = (unit(d1) @ unit(d2).T).abs()
    assert sp['a_to_b'] == pytest.approx(C.max(1).values.mean().item(), abs=1e-12)   # exact, against float64
    assert sp['b_to_a'] == pytest.approx(C.max(0).values.mean().item(), abs=1e-12)
    assert sp['mmcs'] == pytest.approx(mmcs(s1, s2), abs=1e-6)
    assert sp['hungarian_mcc'] == pytest.approx(dense_opt(d1, d2), abs=1e-9)
    sf = shared_fraction(s1, s2, detail=True)
    for key in ('shared_fraction', 'decoder_only', 'agree', 'n'): assert sp[key] == sf[key]
    assert sp['exact'] and sp['gap'] <= 1e-9

def test_stability_pair_small_uses_dense_and_agrees():
    s1 = Weights(rnd(60, 8, 0), rnd(8, 60, 1)); s2 = Weights(rnd(50, 8, 2), rnd(8, 50, 3))
    sp = stability_pair(s1, s2)
    assert sp['mmcs'] == pytest.approx(mmcs(s1, s2), abs=1e-7) and sp['hungarian_mcc'] == pytest.approx(hungarian_mcc(s1, s2), abs=1e-12)
    assert sp['shared_fraction'] == shared_fraction(s1, s2)
