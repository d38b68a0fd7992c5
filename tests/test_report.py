"""The stability report: metric values, baselines, ratios with intervals, alive-latent metrics, the permutation test."""
import math
import numpy as np
import pytest
import torch
from husai.stability import Weights, pairwise
from husai.baselines import baseline_pool
from husai.stats import seeds_statement, seed_interval
from husai.report import compare_to_random, stability_report

def test_compare_to_random_detects_shared_dictionary():
    base = torch.randn(48, 12, generator=torch.Generator().manual_seed(0))
    near = [Weights(base + 0.2 * torch.randn(48, 12, generator=torch.Generator().manual_seed(s))) for s in range(1, 6)]
    t = compare_to_random(near, baseline_pool('isotropic', 12, 48, range(5)))
    assert t['p_value'] == pytest.approx(1 / 252) and t['statistic'] > 0.3

def test_stability_report_structure_and_ratios():
    base = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    saes = [Weights(base + 0.1 * torch.randn(32, 16, generator=torch.Generator().manual_seed(s)),
                    (base + 0.1 * torch.randn(32, 16, generator=torch.Generator().manual_seed(s + 10))).T) for s in range(4)]
    rep = stability_report(saes, baselines=('isotropic', 'isotropic_exact', 'subspace'), test=True,
                           acts=torch.randn(500, 16, generator=torch.Generator().manual_seed(3)))
    assert rep['n_seeds'] == 4 and rep['d_in'] == 16 and rep['d_sae'] == 32 and len(rep['pairs']) == 6
    assert rep['statement'] == seeds_statement(4) and 'alive' not in rep      # bare weights cannot run: no alive section
    for m in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        r = rep['metrics'][m]
        direct = pairwise(saes, m).values
        assert r['mean'] == pytest.approx(direct.mean())
        assert (r['ci_low'], r['ci_high']) == pytest.approx((seed_interval(pairwise(saes, m).matrix)['ci_low'],
                                                             seed_interval(pairwise(saes, m).matrix)['ci_high']))
        for kind, b in r['baselines'].items():
            assert r['ratios'][f'ratio_to_{kind}'] == pytest.approx(r['mean'] / b if b else math.nan, nan_ok=True)
        assert r['test']['against'] == 'isotropic' and r['test']['p_value'] == pytest.approx(1 / 70)
        assert 'value' not in r                                                # one number, one key
    assert 'isotropic_exact' in rep['metrics']['mmcs']['baselines']
    assert 'isotropic_exact' not in rep['metrics']['hungarian_mcc']['baselines']

def test_alive_section_on_runnable_saes():
    from husai.sae import SAEConfig, init_saes
    sae = init_saes(SAEConfig('topk', d_in=16, d_sae=48, k=4, b_dec_init='zeros'), [0, 1, 2])
    with torch.no_grad():
        sae.W_dec[1:, :10] = sae.W_dec[0, :10]; sae.W_enc[:, :, :10] = sae.W_dec[0, :10].T
        sae.b_enc[:, 10:] = -1e4; sae.b_enc[:, :10] = 20.0
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    rep = stability_report(sae, baselines=('isotropic', 'isotropic@alive'), acts=x)
    assert rep['alive']['n_alive'] == [10, 10, 10]
    for m in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        assert rep['alive']['metrics'][m]['mean'] == pytest.approx(1.0, abs=1e-5)
        assert rep['alive']['metrics'][m]['mean'] > rep['metrics'][m]['mean']
    assert rep['metrics']['mmcs']['ratios']['ratio_to_isotropic@alive'] > 1
    assert 'alive' not in stability_report(sae, baselines=('isotropic',), acts=x, alive=False)

def _save_seeds(folder, n=4, d_in=12, d_sae=24, share=10):
    "SAEs whose first `share` latents agree (and fire on positive inputs) and whose others never fire."
    from husai.io import SAEWeights, save_sae
    base = torch.randn(d_sae, d_in, generator=torch.Generator().manual_seed(99)); base /= base.norm(dim=1, keepdim=True)
    for s in range(n):
        g = torch.Generator().manual_seed(s)
        W = torch.randn(d_sae, d_in, generator=g); W /= W.norm(dim=1, keepdim=True); W[:share] = base[:share]
        b = torch.full((d_sae,), -1e4); b[:share] = 10.0
        save_sae(folder/f'seed{s}', SAEWeights(W.T.contiguous(), W, b, torch.zeros(d_in), cfg={'architecture': 'relu'}), seed=s)
    return folder

def test_cli_with_acts_adds_subspace_baselines_and_alive_metrics(tmp_path, capsys):
    import json
    from husai.cli import main
    folder = _save_seeds(tmp_path/'run')
    acts = torch.randn(300, 12, generator=torch.Generator().manual_seed(5)).numpy()
    np.save(tmp_path/'acts.npy', acts)
    code = main(['stability', str(folder), '--json', '--acts', str(tmp_path/'acts.npy')])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert r['alive']['n_alive'] == [10] * 4 and r['alive']['summary']['mmcs']['mean'] == pytest.approx(1.0, abs=1e-5)
    for m in ('mmcs', 'hungarian_mcc', 'shared_fraction'):
        assert {'ratio_to_isotropic', 'ratio_to_subspace', 'ratio_to_subspace@alive'} <= set(r['ratios'][m])
        assert set(r['alive']['ratios'][m]) == {'ratio_to_isotropic', 'ratio_to_subspace'}
        lo, hi = r['ratio_intervals'][m]['ratio_to_isotropic']
        if r['baselines']['isotropic'][m] > 0: assert lo <= r['ratios'][m]['ratio_to_isotropic'] <= hi
        else: assert r['ratios'][m]['ratio_to_isotropic'] is None      # a zero baseline: no ratio (null), not inf
    act = r['activation']
    assert len(act['pairs']) == 6 and act['summary']['activation_mcc']['mean'] == pytest.approx(1.0, abs=1e-5)
    assert act['summary']['agreement']['mean'] == pytest.approx(1.0)      # the same latents by activation and by decoder
    code = main(['stability', str(folder), '--acts', str(tmp_path/'acts.npy')])   # the readable table
    out, _ = capsys.readouterr()
    assert code == 0 and 'alive latents only' in out and 'subspace@alive' in out

@pytest.mark.parametrize('args,words', [(['--n-boot', '0'], '--n-boot'), (['--n-boot', '-5'], '--n-boot'),
                                        (['--seed', '-1'], '--seed'), (['--threshold', '1.5'], 'threshold')])
def test_cli_bad_options_exit_2(tmp_path, capsys, args, words):
    from husai.cli import main
    folder = _save_seeds(tmp_path/'run', n=2)
    code = main(['stability', str(folder), *args])
    _, err = capsys.readouterr()
    assert code == 2 and words in err and err.count('\n') == 1

def test_cli_acts_of_the_wrong_width_exit_2(tmp_path, capsys):
    from husai.cli import main
    folder = _save_seeds(tmp_path/'run', n=2)
    np.save(tmp_path/'acts.npy', np.zeros((10, 7), np.float32))
    code = main(['stability', str(folder), '--acts', str(tmp_path/'acts.npy')])
    assert code == 2 and 'width 7' in capsys.readouterr().err

def test_complex_weights_are_refused():
    from husai.core import HusaiError
    from husai.stability import mmcs
    with pytest.raises(HusaiError, match='complex'): mmcs(torch.randn(4, 3, dtype=torch.complex64), torch.randn(4, 3))
