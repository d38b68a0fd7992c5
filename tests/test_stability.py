"""Stability metrics against independent expectations: naive full-matrix references, exact optima, symmetry."""
import itertools
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.optimize import linear_sum_assignment
from husai.core import HusaiError
from husai.stability import (Weights, decoder_rows, encoder_rows, split_seeds, max_cos, mmcs, match, hungarian_mcc,
                             shared_fraction, pairwise)

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
