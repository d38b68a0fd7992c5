"""Findings 02 (matched regime) and 05 (shared features): the cells that state their common design (scales, d_sae grids, k
rules, which SAE sets are trained) are the same in both (else the cache would not return 02's SAEs to 05); the checkpoint
choice of the per-size claims (`husai.experiment.rank_matched_step`, against brute force); 05's pair matrices."""
import ast, json
from pathlib import Path
import numpy as np
import pytest
import torch
from husai.stability import Weights, shared_fraction
from husai.stats import seed_interval

NBS = Path(__file__).resolve().parents[1]/'nbs'/'findings'
SHARED = ('# The setting of 02_matched_regime and 05_shared_features', '# The transformers (same in 02_matched_regime',
          '# The SAE sets (same in 02_matched_regime')

def cells(name):
    return [''.join(c['source']) for c in json.loads((NBS/name).read_text())['cells'] if c['cell_type'] == 'code']

def cell_starting(name, head):
    hits = [c for c in cells(name) if c.startswith(head)]
    assert len(hits) == 1, f"{name}: {len(hits)} cells start with {head!r}"
    return hits[0]

def defs(name, head, names, env):
    "Execute only the function definitions `names` of the cell of notebook `name` that starts with `head`, in `env`."
    tree = ast.parse(cell_starting(name, head))
    mod = ast.Module([n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names], type_ignores=[])
    exec(compile(mod, name, 'exec'), env)
    return env

@pytest.mark.parametrize('head', SHARED)
def test_shared_cells_identical(head):
    assert cell_starting('02_matched_regime.ipynb', head) == cell_starting('05_shared_features.ipynb', head)

def test_rank_matched_step():
    from husai.experiment import rank_matched_step as f      # moved from the shared setting cell into the library
    assert f({0: 37.6, 100: 36.5, 1000: 7.4}, 80, 0.25) is None             # quick-scale ranks: none near the seed's 80
    assert f({0: 61.0, 200: 104.0, 1000: 12.0}, 80, 0.25) == 0               # 61 is 19 from 80 (within 20), 104 is 24
    assert f({0: 59.9, 1000: 12.0}, 80, 0.25) is None                        # just outside the 25% band
    assert f({0: 70.0, 200: 90.0}, 80, 0.25) == 0                            # a tie goes to the earlier checkpoint
    rng = np.random.default_rng(0)
    for _ in range(200):                                                     # against a brute-force reference
        ranks = {int(s): float(r) for s, r in zip(rng.choice(10_000, 6, replace=False), rng.uniform(1, 128, 6))}
        best = sorted(ranks, key=lambda s: (abs(ranks[s] - 80), s))[0]
        assert f(ranks, 80, 0.25) == (best if abs(ranks[best] - 80) <= 20 else None)

def test_pair_matrices_against_direct_calls():
    env = defs('05_shared_features.ipynb', 'QUANTITIES = ', {'pair_matrices', 'shared_summary'},
               {'np': np, 'shared_fraction': shared_fraction, 'seed_interval': seed_interval,
                'THRESHOLDS': (0.3, 0.5, 0.7), 'QUANTITIES': ('shared_fraction', 'decoder_only', 'agree', 'encoder_mcc')})
    g = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
    items = []
    for s in range(4):                                                       # noisy copies: pairs differ from each other
        D = torch.nn.functional.normalize(base + 0.3 * torch.randn(12, 8, generator=g), dim=1)
        E = torch.nn.functional.normalize(base + 0.6 * torch.randn(12, 8, generator=g), dim=1)
        items.append(Weights(D, E.T))
    pm = env['pair_matrices'](items)
    for (i, j) in [(0, 1), (0, 3), (2, 3)]:
        direct = shared_fraction(items[i], items[j], [0.3, 0.5, 0.7], detail=True)
        for t in (0.3, 0.5, 0.7):
            for q in ('shared_fraction', 'decoder_only') + (('agree', 'encoder_mcc') if t == 0.7 else ()):
                assert pm[q, t][i, j] == pm[q, t][j, i] == direct[t][q]
    assert ('agree', 0.3) not in pm and ('encoder_mcc', 0.5) not in pm     # they do not depend on the threshold: kept once
    assert np.isnan(np.diag(pm['shared_fraction', 0.5])).all()
    ss = env['shared_summary'](items)
    assert ss['shared_fraction@0.5'] == pytest.approx(np.nanmean(pm['shared_fraction', 0.5]))
    assert ss['shared_fraction@0.5_lo'] <= ss['shared_fraction@0.5'] <= ss['shared_fraction@0.5_hi']
