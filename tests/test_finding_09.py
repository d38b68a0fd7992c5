"""Finding 09's own helpers (written in the notebook, not the library) compute what the notebook says they compute.

The helper cells are read out of nbs/findings/09_what_makes_saes_stable.ipynb and executed, then checked on tiny
cases against independent references: a brute-force assignment for the per-group matched cosine, a by-hand average
of the members' reconstructions for the bagged ensemble, and training the selected seeds alone for `subset`.
"""
import itertools, json, math
from pathlib import Path
import numpy as np
import pytest
import torch

NB = Path(__file__).resolve().parent.parent/'nbs'/'findings'/'09_what_makes_saes_stable.ipynb'
HELPERS = ('def method_configs', 'def ensemble_result', 'def group_gap')

@pytest.fixture(scope='module')
def nb():
    "The notebook's import cell and helper cells, executed in one namespace."
    cells = [''.join(c['source']) for c in json.loads(NB.read_text())['cells'] if c['cell_type'] == 'code']
    ns = {}
    exec(next(c for c in cells if 'from husai.experiment import' in c), ns)
    for h in HELPERS: exec(next(c for c in cells if h in c), ns)
    return ns

def test_unit_scale():
    "The change of units 09 applies to every source (the library's `unit_scale`, also finding 08's)."
    from husai.experiment import unit_scale
    x = torch.randn(300, 7) * 40 + 3
    y, c = unit_scale(x)
    assert abs(float(y.pow(2).sum(1).mean()) - 7) < 1e-3
    assert torch.allclose(y, x * c, rtol=1e-5)

def _brute_matching(A, B):
    "The one-to-one matching maximising summed signed cosine, by trying every permutation (tiny m only)."
    A, B = A.double(), B.double(); A = A / A.norm(dim=1, keepdim=True); B = B / B.norm(dim=1, keepdim=True)
    C = (A @ B.T).double().numpy()
    best = max(itertools.permutations(range(len(A))), key=lambda p: sum(C[i, p[i]] for i in range(len(A))))
    return np.array([C[i, best[i]] for i in range(len(A))]), np.array(best)

def test_group_gap_matches_brute_force(nb):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 6, 5, generator=g)
    W[1, :2] = W[0, :2] + 0.05 * torch.randn(2, 5, generator=g)      # the first group nearly shared between seeds 0 and 1
    sae = type('W', (), {'W_dec': W})()
    alive = torch.tensor([[1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    for al in (None, alive):
        got = nb['group_gap'](sae, 2, al)
        a = torch.ones(3, 6, dtype=torch.bool) if al is None else al
        for i, j in ((0, 1), (0, 2), (1, 2)):
            cos_i, perm = _brute_matching(W[i], W[j])
            cos_j = np.zeros(6); cos_j[perm] = cos_i
            gap = lambda c, m: c[:2][m[:2].numpy()].mean() - c[2:][m[2:].numpy()].mean()
            ref = (gap(cos_i, a[i]) + gap(cos_j, a[j])) / 2
            assert math.isclose(got[i, j], ref, abs_tol=1e-6) and got[j, i] == got[i, j]
    assert nb['group_gap'](sae, 2)[0, 1] > 0.3                         # the shared first group shows as a gap

def test_ensemble_result_is_the_members_average(nb):
    from husai.sae import SAEConfig, select_seeds
    from husai.train_sae import TrainConfig, train_saes, split_acts
    acts = torch.randn(400, 8) @ torch.randn(8, 8)
    tc = TrainConfig(steps=30, data_order='per_seed', checkpoint_every=15)
    mem = train_saes(acts, SAEConfig('topk', d_sae=12, k=2), [0, 1, 2, 3], tc, progress=False)
    ens = nb['ensemble_result'](acts, mem, tc)
    _, held = split_acts(acts, tc.eval_frac, tc.split_seed)
    with torch.no_grad():
        rec = mem.saes(held)                                            # [4, n, d]: members 0, 1 -> ensemble 0; 2, 3 -> ensemble 1
        for e in range(2):
            x_hat = (rec[2 * e] + rec[2 * e + 1]) / 2
            fvu = float((held - x_hat).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
            assert math.isclose(ens.metrics[e]['fvu_eval'], fvu, rel_tol=1e-4)
            l0 = float(((mem.saes.encode(held)[2 * e] > 0).sum(-1) + (mem.saes.encode(held)[2 * e + 1] > 0).sum(-1)).double().mean())
            assert math.isclose(ens.metrics[e]['l0'], l0, rel_tol=1e-9)
    assert torch.equal(ens.at(15).W_dec[1], torch.cat([mem.at(15).W_dec[2], mem.at(15).W_dec[3]]))
    assert tuple(ens.saes.W_dec.shape) == (2, 24, 8)

def test_subset_is_the_seeds_trained_alone(nb):
    from husai.sae import SAEConfig
    from husai.train_sae import TrainConfig, train_saes
    acts = torch.randn(300, 6)
    tc = TrainConfig(steps=25, data_order='per_seed', checkpoint_every=25)
    both = train_saes(acts, SAEConfig('topk', d_sae=10, k=2), [0, 1, 2, 3], tc, progress=False)
    alone = train_saes(acts, SAEConfig('topk', d_sae=10, k=2), [0, 1], tc, progress=False)
    sub = nb['subset'](both, [0, 1])
    assert sub.seeds == [0, 1] and torch.equal(sub.saes.W_dec, alone.saes.W_dec)
    assert torch.equal(sub.at(25).W_dec, alone.at(25).W_dec) and sub.metrics[1] == alone.metrics[1]
