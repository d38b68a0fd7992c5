"""Song et al.'s synthetic data, and a reduced-scale check that a TopK SAE recovers the ground truth and beats ReLU+L1."""
import numpy as np
import pytest
import torch
from husai.core import HusaiError
from husai.synthetic import SyntheticConfig, make_synthetic, ground_truth_mcc

def test_generator_shapes_sparsity_and_seed():
    cfg = SyntheticConfig(d=10, n_features=50, k=4, n_samples=3000, seed=5)
    data = make_synthetic(cfg, chunk=700)
    assert data.X.shape == (3000, 10) and data.dictionary.shape == (50, 10)
    assert torch.allclose(data.dictionary.norm(dim=1), torch.ones(50), atol=1e-6)
    codes = data.codes()
    assert ((codes > 0).sum(1) == 4).all() and (codes >= 0).all()
    assert torch.allclose(codes @ data.dictionary, data.X, atol=1e-5)
    assert torch.equal(make_synthetic(cfg, chunk=700).X, data.X)
    assert not torch.equal(make_synthetic(SyntheticConfig(d=10, n_features=50, k=4, n_samples=3000, seed=6)).X, data.X)
    with pytest.raises(HusaiError): make_synthetic(SyntheticConfig(k=0))

def test_atoms_uniform_and_coefficients_half_normal():
    data = make_synthetic(SyntheticConfig(n_samples=40_000, seed=1))
    freq = torch.bincount(data.idx.ravel(), minlength=32).double() / (40_000 * 3)
    assert (freq - 1 / 32).abs().max() < 0.004
    assert data.coef.mean().item() == pytest.approx(np.sqrt(2 / np.pi), abs=0.01)
    assert data.coef.pow(2).mean().item() == pytest.approx(1.0, abs=0.02)

def test_ground_truth_mcc_of_truth_is_one():
    data = make_synthetic(SyntheticConfig(n_samples=10))
    assert ground_truth_mcc(data.dictionary[None].repeat(2, 1, 1), data.dictionary) == pytest.approx([1, 1])

def test_topk_recovers_ground_truth_and_beats_relu():
    "Reduced Song et al. setting (2 seeds, 20k samples, mini-batches): TopK finds the true atoms (MCC >= 0.9), ReLU+L1 less so."
    data = make_synthetic(SyntheticConfig(n_samples=20_000, seed=42))
    threads = torch.get_num_threads(); torch.set_num_threads(1)     # tiny matrices: one thread is faster on a busy CPU
    try: _train_and_check(data)
    finally: torch.set_num_threads(threads)

def _train_and_check(data):
    from husai.sae import SAEConfig
    from husai.train_sae import TrainConfig, train_saes
    from husai.stability import pairwise
    tc = dict(batch_size=512, lr=5e-3, lr_decay='none', lr_warmup_steps=0, l1_warmup_steps=0, eval_frac=0.0)
    topk = train_saes(data.X, SAEConfig(arch='topk', d_in=16, d_sae=32, k=3, aux_k=0, b_dec_init='zeros'), [0, 1],
                      TrainConfig(steps=1500, **tc), progress=False)
    relu = train_saes(data.X, SAEConfig(arch='relu', d_in=16, d_sae=32, l1_coef=1e-2, b_dec_init='zeros'), [0, 1],
                      TrainConfig(steps=800, **tc), progress=False)
    gt_topk, gt_relu = ground_truth_mcc(topk.saes, data.dictionary), ground_truth_mcc(relu.saes, data.dictionary)
    assert (gt_topk >= 0.9).all(), gt_topk
    assert gt_topk.mean() > gt_relu.mean() + 0.1, (gt_topk, gt_relu)
    assert pairwise(topk.saes, 'hungarian_mcc').values[0] > pairwise(relu.saes, 'hungarian_mcc').values[0]
