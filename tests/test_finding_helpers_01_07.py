"""The small helpers that findings 01 and 07 define in their own notebooks, checked against naive references.

The functions are read out of the notebooks (only their `def`s, nothing else runs), so the tests follow the code
the findings actually run."""
import ast, itertools, json, math
from collections import Counter
from pathlib import Path
import numpy as np
import pytest
import torch
from husai.explorer import fourier_power
from husai.stability import match

FINDINGS = Path(__file__).resolve().parent.parent/'nbs'/'findings'

def _defs(notebook: str, *names) -> dict:
    "The functions `names` defined in the code cells of `notebook`, compiled alone in a namespace of the libraries they use."
    cells = [''.join(c['source']) for c in json.loads((FINDINGS/notebook).read_text())['cells'] if c['cell_type'] == 'code']
    ns = {'np': np, 'torch': torch, 'math': math, 'fourier_power': fourier_power, 'match': match}
    found = set()
    for src in cells:
        try: tree = ast.parse(src)
        except SyntaxError: continue                       # cells with IPython magics hold none of these helpers
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                exec(compile(ast.Module([node], type_ignores=[]), notebook, 'exec'), ns); found.add(node.name)
    missing = set(names) - found
    if missing: pytest.fail(f"{notebook} no longer defines {sorted(missing)}")
    return ns

# --- finding 07: key-frequency share of a latent's grid, its chance level, per-latent stability

def _naive_key_share(g, keys):
    "Share of the non-constant |DFT|^2 of one grid on the cells (±f, 0), (0, ±f), (f, f), (-f, -f), (f, -f), (-f, f)."
    p = g.shape[0]
    P = np.abs(np.fft.fft2(g)) ** 2; P[0, 0] = 0
    cells = set()
    for f in keys:
        for u, v in ((f, 0), (-f, 0), (0, f), (0, -f), (f, f), (-f, -f), (f, -f), (-f, f)): cells.add((u % p, v % p))
    return sum(P[u, v] for u, v in cells) / P.sum()

@pytest.mark.parametrize('p', [7, 23, 59])
def test_key_share_matches_a_naive_dft(p):
    ns = _defs('07_interpretation.ipynb', 'key_share')
    rng = np.random.default_rng(p)
    grids = np.maximum(rng.normal(size=(6, p, p)), 0)       # rectified noise: every cell has power
    for keys in ([1], [2, 5 % p or 1], list(range(1, p // 2 + 1))):
        got = ns['key_share'](grids, keys)
        want = [_naive_key_share(g, keys) for g in grids]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)

def test_key_share_of_every_frequency_is_one_and_chance_counts_cells():
    ns = _defs('07_interpretation.ipynb', 'key_share', 'chance_share')
    p = 11
    g = np.random.default_rng(0).normal(size=(p, p))
    all_keys = list(range(1, p // 2 + 1))
    lines = ns['key_share'](g, all_keys)                     # the four lines, not the whole plane
    assert 0 < lines < 1
    n_cells = len({(u % p, v % p) for f in all_keys for u, v in ((f, 0), (-f, 0), (0, f), (0, -f), (f, f), (-f, -f), (f, -f), (-f, f))})
    assert ns['chance_share'](p, all_keys) == pytest.approx(n_cells / (p * p - 1))
    assert ns['chance_share'](p, [3, p - 3]) == ns['chance_share'](p, [3])       # f and p - f are one frequency

def _brute_stability(W, ref):
    "Mean over the other seeds of each latent's cosine with its partner in the best one-to-one matching (all permutations)."
    U = W.double() / W.double().norm(dim=-1, keepdim=True)
    S, m = W.shape[:2]
    per = []
    for s in range(S):
        if s == ref: continue
        C = (U[ref] @ U[s].T).numpy()
        best = max(itertools.permutations(range(m)), key=lambda pi: sum(C[i, pi[i]] for i in range(m)))
        per.append([C[i, best[i]] for i in range(m)])
    return np.mean(per, 0)

@pytest.mark.parametrize('ref', [0, 2])
def test_latent_stability_matches_brute_force(ref):
    ns = _defs('07_interpretation.ipynb', 'latent_stability')
    W = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(ref))
    stab, partner = ns['latent_stability'](W, ref)
    np.testing.assert_allclose(stab, _brute_stability(W, ref), rtol=1e-9)
    assert (partner[ref] == np.arange(5)).all() and all(sorted(row) == list(range(5)) for row in partner)

# --- finding 01: the best guess of the answer from one input position

def _naive_single_token(x, y):
    out = []
    for j in range(x.shape[1]):
        by = {}
        for t, a in zip(x[:, j].tolist(), y.tolist()): by.setdefault(t, Counter())[a] += 1
        out.append(sum(c.most_common(1)[0][1] for c in by.values()) / len(y))
    return out

def test_single_token_accuracy_matches_counting():
    ns = _defs('01_grokking.ipynb', 'single_token_accuracy')
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 9, (500, 4), generator=g); y = (x[:, 0] * 2 + torch.randint(0, 2, (500,), generator=g)) % 7
    assert ns['single_token_accuracy'](x, y, 7) == pytest.approx(_naive_single_token(x, y))

def test_single_token_accuracy_sees_the_seed_leak_and_not_ours():
    from husai.tasks import make_dataset
    ns = _defs('01_grokking.ipynb', 'single_token_accuracy', 'seed_layout')
    ns.update(make_dataset=make_dataset, ModularDataset=__import__('husai.tasks', fromlist=['ModularDataset']).ModularDataset)
    ours = make_dataset('add', 13, 0.5, 0)
    assert ns['single_token_accuracy'](ours.inputs, ours.targets, 13) == pytest.approx([1 / 13] * 3)
    leaky = ns['seed_layout']('add', 13)
    acc = ns['single_token_accuracy'](leaky.inputs, leaky.targets, 13)
    assert acc[-1] == 1.0 and acc[:-1] == pytest.approx([1 / 13] * 5)
