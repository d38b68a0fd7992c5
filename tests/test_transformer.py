"Transformer: the last-position fast path equals the naive full forward; activations match a direct forward."
import pytest, torch
from husai.core import HusaiError
from husai.tasks import make_dataset
from husai.transformer import Transformer, TransformerConfig, extract_activations, site_names, SITES

@pytest.mark.parametrize('task,L', [('add', 1), ('mul', 2), ('combined', 1)])
def test_fast_path_equals_full_forward(task, L):
    ds = make_dataset(task, p=17, n_samples=500 if task == 'combined' else None)
    m = Transformer(TransformerConfig.for_dataset(ds, n_layers=L, d_model=64, d_head=16, d_mlp=128), seed=1)
    with torch.no_grad():   # scale the weights up so that attention patterns are far from uniform
        for b in m.blocks: b.W_Q.mul_(4); b.W_K.mul_(4)
    x = ds.inputs
    fast, full = m(x), m.forward_full(x)
    assert fast.shape == (len(ds), 17) and full.shape == (len(ds), ds.seq_len, 17)
    torch.testing.assert_close(fast, full[:, -1], rtol=1e-4, atol=1e-4)
    # gradients agree too (training uses the fast path)
    g1 = torch.autograd.grad(fast.square().sum(), list(m.parameters()))
    g2 = torch.autograd.grad(m.forward_full(x)[:, -1].square().sum(), list(m.parameters()))
    for a, b in zip(g1, g2): torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)

def test_same_seed_same_model():
    cfg = TransformerConfig(vocab_size=12, seq_len=3, n_out=11)
    a, b, c = Transformer(cfg, seed=0), Transformer(cfg, seed=0), Transformer(cfg, seed=1)
    for (k, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y)
        if k.startswith('W'): assert not torch.equal(x, z)

def test_causal_mask():
    "Changing a later token must not change earlier positions of the full forward."
    ds = make_dataset('add', p=11)
    m = Transformer(TransformerConfig.for_dataset(ds), seed=0)
    x = ds.inputs[:50].clone(); x2 = x.clone(); x2[:, 1] = (x2[:, 1] + 1) % 11
    torch.testing.assert_close(m.forward_full(x)[:, 0], m.forward_full(x2)[:, 0])

def test_extract_activations():
    ds = make_dataset('sub', p=19, seed=2)
    m = Transformer(TransformerConfig.for_dataset(ds, n_layers=2), seed=0)
    assert set(site_names(2)) > set(SITES) - {'logits'} and len(SITES) == 8
    for site in site_names(2):
        acts, ops = extract_activations(m, ds, site, split='test', batch_size=37)
        x = ds.inputs[ds.test_idx]
        with torch.no_grad():
            ref = m.forward_full(x) if site == 'logits' else m.forward_full(x, site=site)
        d = {'logits': 19}.get(site, 512 if site.startswith('mlp_hidden') else 128)
        assert acts.shape == (len(ds.test_idx), d) and acts.dtype == torch.float32
        torch.testing.assert_close(acts, ref[:, -1])
        assert torch.equal(ops, ds.operands[ds.test_idx])
    a0, _ = extract_activations(m, ds, 'embed', position=0)
    torch.testing.assert_close(a0, m.W_E.detach()[ds.operands[:, 0]])      # position 0's token is a
    assert m.training   # extraction restores the mode

def test_bad_inputs():
    ds = make_dataset('add', p=7)
    m = Transformer(TransformerConfig.for_dataset(ds))
    with pytest.raises(HusaiError, match='unknown site'): extract_activations(m, ds, 'resid_mid.3')
    with pytest.raises(HusaiError, match='position'): extract_activations(m, ds, 'embed', position=3)
    with pytest.raises(HusaiError, match='split'): extract_activations(m, ds, 'embed', split='val')
    with pytest.raises(HusaiError, match='positive'): TransformerConfig(d_model=0)
