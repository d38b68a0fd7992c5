"""The feature explorer on the output of `husai train-saes`: latent grids against a naive per-input
computation, Fourier spectra against analytic cases, pairs against an independent Hungarian matching,
the widget's callbacks, and the errors for runs it cannot draw."""
import shutil
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from husai.core import HusaiError, load_json, save_json
from husai.cli import main
from husai.grokking import grok_config, train_grokking, load_run
from husai.io import load_sae, save_sae, SAEWeights, load_acts
from husai.stability import match
from husai.explorer import (to_grid, fourier_power, latent_grid, grid_activations, open_run, load_pair,
                            plot_pair, plot_pairs, explorer, log_grid, in_basis)

P, K, D_SAE = 11, 4, 32


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A small model (p=11, briefly trained) and a `husai train-saes` folder of three seeds on its resid_post."
    root = tmp_path_factory.mktemp('explorer')
    cfg = grok_config('quick', p=P, d_model=32, d_head=8, d_mlp=64, steps=40, log_every=20, checkpoint_every=40)
    model = train_grokking(cfg, out=root/'model', cache=False, progress=False)
    out = root/'saes'
    assert main(['train-saes', str(model), '--site', 'resid_post', '--d-sae', str(D_SAE), '--k', str(K),
                 '--seeds', '0', '1', '2', '--steps', '150', '--batch-size', '64', '--out', str(out), '--quiet']) == 0
    return root, model, out


@pytest.fixture(scope='module')
def data(runs):
    return load_pair(runs[2], 0, 2)


def test_grid_activations_are_what_train_saes_read(runs):
    _, model, _ = runs
    g = grid_activations(model, 'resid_post', 0)
    assert (g.p, g.task, g.site) == (P, 'add', 'resid_post.0')
    torch.testing.assert_close(g.acts, load_acts(model, 'resid_post', 0), rtol=0, atol=0)


def test_latent_grid_equals_naive_per_input_encoding(runs, data):
    _, model_dir, out = runs
    m, _, _ = load_run(model_dir)
    w = load_sae(out/'seed_0')
    grid = data.grid_a
    assert grid.shape == (D_SAE, P, P)
    for a in range(P):
        for b in range(P):
            with torch.no_grad(): x = m.forward_full(torch.tensor([[a, b, P]]), site='resid_post.0')[0, -1]
            pre = (x - w.b_dec) @ w.W_enc + w.b_enc                      # [d_sae]
            top = pre.topk(K).indices
            code = torch.zeros(D_SAE); code[top] = torch.relu(pre[top])
            np.testing.assert_allclose(grid[:, a, b], code.numpy(), atol=1e-4, rtol=1e-4, err_msg=f'({a}, {b})')
    assert ((grid > 0).sum(0) <= K).all()


def test_to_grid_places_rows_by_their_operands():
    rng = np.random.default_rng(0)
    ops = np.array([(a, b) for a in range(5) for b in range(5)])
    perm = rng.permutation(25)
    vals = ops[perm, 0] * 100 + ops[perm, 1]
    g = to_grid(vals, ops[perm], 5)
    assert all(g[a, b] == a * 100 + b for a in range(5) for b in range(5))
    with pytest.raises(HusaiError, match='three-operand'): to_grid(np.zeros(125), np.zeros((125, 3), int), 5)
    with pytest.raises(HusaiError, match='full 5 x 5 grid'): to_grid(vals[:20], ops[:20], 5)


def test_fourier_power_analytic():
    p, f = 13, 4
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing='ij')
    s = fourier_power(np.cos(2 * np.pi * f * (a + b) / p))
    nz = np.argwhere(s.power > 1e-9)
    assert sorted(map(tuple, nz)) == sorted([(f, f), (p - f, p - f)])           # all power at (f, f), (-f, -f)
    np.testing.assert_allclose(s.power[f, f], p * p / 4); np.testing.assert_allclose(s.total, p * p / 2)
    np.testing.assert_allclose(s.on_sum, np.eye(len(s.freqs))[f - 1], atol=1e-12)
    assert np.allclose(s.on_a, 0) and np.allclose(s.on_b, 0) and np.allclose(s.on_diff, 0)
    s = fourier_power(3 + np.sin(2 * np.pi * 2 * (a - b) / p) + np.cos(2 * np.pi * 5 * b / p))
    np.testing.assert_allclose(s.on_diff[1], 0.5); np.testing.assert_allclose(s.on_b[4], 0.5)
    np.testing.assert_allclose(s.const, (3 * p) ** 2)
    g = np.random.default_rng(1).normal(size=(3, p, p))                          # Parseval, per grid
    s = fourier_power(g)
    np.testing.assert_allclose(s.const + s.total, (g ** 2).sum((1, 2)))
    assert s.on_a.shape == (3, (p - 1) // 2)


def test_pairs_are_the_hungarian_matching_ranked_by_cosine(runs, data):
    _, _, out = runs
    wa, wb = load_sae(out/'seed_0'), load_sae(out/'seed_2')
    assert (data.a, data.b) == ('seed_0', 'seed_2')
    assert np.all(np.diff(data.cos) <= 0)
    ref = match(wa.W_dec, wb.W_dec)
    assert set(zip(data.latent_a.tolist(), data.latent_b.tolist())) == set(zip(ref.rows.tolist(), ref.cols.tolist()))
    A = (wa.W_dec / wa.W_dec.norm(dim=1, keepdim=True)).double().numpy()
    B = (wb.W_dec / wb.W_dec.norm(dim=1, keepdim=True)).double().numpy()
    C = A @ B.T
    np.testing.assert_allclose(data.cos, C[data.latent_a, data.latent_b], atol=1e-6)
    r, c = linear_sum_assignment(C, maximize=True)
    np.testing.assert_allclose(data.cos.sum(), C[r, c].sum(), atol=1e-6)   # an optimal one-to-one matching
    rows = data.ranked(3)
    assert [x['rank'] for x in rows] == [0, 1, 2] and rows[0]['cos'] == pytest.approx(float(data.cos[0]))
    i = int(data.latent_a[5]); assert data.rank_of(i) == 5


def test_firing_rates_and_a_dead_latent(runs, tmp_path):
    root, model, out = runs
    w = load_sae(out/'seed_1')
    b_enc = w.b_enc.clone(); b_enc[3] = -1e4                                      # latent 3 can never fire
    save_sae(tmp_path/'x'/'dead', SAEWeights(w.W_enc, w.W_dec, b_enc, w.b_dec, None, w.cfg))
    with pytest.raises(HusaiError, match='model='): open_run([tmp_path/'x'/'dead', out/'seed_0'])   # no record beside it
    d = load_pair([out/'seed_0', tmp_path/'x'/'dead'], model=model, site='resid_post')
    assert d.run.names == ['seed_0', 'dead']
    assert d.fire_b[3] == 0 and d.fire_b.shape == (D_SAE,)
    np.testing.assert_allclose(d.fire_b, (d.grid_b > 0).mean((1, 2)))
    assert 'dead' in explorer_label(d, d.rank_of(d.latent_a[d.latent_b == 3][0]))
    # SAE folders of one train-saes run need no model: the parent's record is used
    assert load_pair([out/'seed_1', out/'seed_2']).run.acts.site == 'resid_post.0'


def explorer_label(d, r):
    from husai.explorer import _label
    return _label(d.ranked()[r])


def test_plot_pair_draws_both_latents(data):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plot_pair(data, 0)
    assert len(fig.axes) == 6 and f'{data.cos[0]:.3f}' in fig._suptitle.get_text()   # 4 panels + 2 colorbars
    im = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(im, data.grid_a[data.latent_a[0]])
    plt.close(fig)
    fig = plot_pair(data, latent=int(data.latent_a[-1]))
    assert f'pair {len(data)} of {len(data)}' in fig._suptitle.get_text(); plt.close(fig)
    fig = plot_pairs(data, [0, -1]); assert len(fig.subfigs) == 2; plt.close(fig)
    with pytest.raises(HusaiError, match='out of range'): plot_pair(data, len(data))


def _generator(p):
    "A generator of the nonzero residues mod p, by brute force: the first g whose powers reach all p - 1."
    return next(g for g in range(2, p) if len({pow(g, i, p) for i in range(p - 1)}) == p - 1)

def test_log_grid_reorders_by_discrete_logs():
    rng = np.random.default_rng(0)
    for p in (5, 11, 13, 59):
        G, g = rng.normal(size=(3, p, p)), _generator(p)
        L = log_grid(G)
        assert L.shape == (3, p - 1, p - 1)
        for i in range(p - 1):
            for j in range(p - 1): assert np.array_equal(L[:, i, j], G[:, pow(g, i, p), pow(g, j, p)])
    with pytest.raises(HusaiError, match='odd prime'): log_grid(np.zeros((9, 9)))
    with pytest.raises(HusaiError, match="not 'add' or 'mul'"): in_basis(np.zeros((5, 5)), 'sub')

def test_functions_of_the_product_sit_on_the_log_grid_sum_line():
    p, f = 11, 3
    g = _generator(p); log = {pow(g, i, p): i for i in range(p - 1)}
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing='ij')
    h = np.zeros((p, p))
    nz = (a > 0) & (b > 0)
    h[nz] = np.sin(2 * np.pi * f * np.vectorize(log.get)((a * b % p)[nz]) / (p - 1))
    ratio = np.zeros((p, p))
    inv = {x: pow(x, p - 2, p) for x in range(1, p)}
    ratio[nz] = np.cos(2 * np.pi * 2 * np.vectorize(log.get)((a * np.vectorize(inv.get)(np.where(nz, b, 1)) % p)[nz]) / (p - 1))
    s = fourier_power(in_basis(np.stack([h, ratio]), 'mul'))
    np.testing.assert_allclose([s.on_sum[0, f - 1], s.on_diff[1, 1]], [1.0, 1.0], atol=1e-12)
    assert fourier_power(h).on_sum.max() < 0.5             # in the additive basis the product is spread out

def test_mul_runs_are_drawn_over_discrete_logs(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from husai.grokking import key_frequencies
    cfg = grok_config('quick', task='mul', p=P, d_model=32, d_head=8, d_mlp=64, steps=40, log_every=20, checkpoint_every=40)
    model = train_grokking(cfg, out=tmp_path/'model', cache=False, progress=False)
    assert main(['train-saes', str(model), '--site', 'resid_post', '--d-sae', '16', '--k', '2',
                 '--seeds', '0', '1', '--steps', '50', '--batch-size', '32', '--out', str(tmp_path/'saes'), '--quiet']) == 0
    d = load_pair(tmp_path/'saes', 0, 1)
    assert d.run.acts.basis == 'mul' and d.run.acts.key_freqs == key_frequencies(load_run(model)[0], 'mul')
    fig = plot_pair(d, 0)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), log_grid(d.grid_a[d.latent_a[0]]))
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ['a', 'b', 'a·b', 'a/b']
    assert fig.axes[0].get_ylabel().startswith('i (a = g')
    plt.close(fig)


def test_widget_selector_redraws_and_seed_pickers_rematch(data):
    pytest.importorskip('ipywidgets', reason='the explorer widget needs ipywidgets (a dev requirement)')
    ui = explorer(data)
    assert ui.seed_a.options == ('seed_0', 'seed_1', 'seed_2') and ui.seed_b.value == 'seed_2'
    assert len(ui.pairs.options) == D_SAE and ui.pairs.value == 0
    first = ui.figure.value
    assert first[:8] == b'\x89PNG\r\n\x1a\n'
    ui.pairs.value = 7
    assert ui.figure.value != first
    ui.seed_b.value = 'seed_1'
    assert (ui.data.a, ui.data.b) == ('seed_0', 'seed_1') and ui.pairs.value == 0
    assert ui.pairs.options[0][0].split()[2] == f'{ui.data.cos[0]:+.3f}'
    assert 'seed_0 vs seed_1' in ui.summary.value
    assert 'application/vnd.jupyter.widget-view+json' in ui._repr_mimebundle_()


def test_models_without_a_full_two_operand_grid_are_refused(tmp_path):
    small = dict(p=5, d_model=16, d_head=4, d_mlp=16, steps=2, log_every=1, checkpoint_every=2)
    combined = train_grokking(grok_config('quick', task='combined', **small), out=tmp_path/'c', cache=False, progress=False)
    with pytest.raises(HusaiError, match="'combined' model with 3 operands.*two-operand"): grid_activations(combined, 'resid_post')
    sampled = train_grokking(grok_config('quick', n_samples=20, **small), out=tmp_path/'s', cache=False, progress=False)
    with pytest.raises(HusaiError, match='20 rows .* not the full 5 x 5 grid'): grid_activations(sampled, 'resid_post')


def test_unknown_seed_lists_the_available_ones(runs):
    with pytest.raises(HusaiError, match='available: seed_0, seed_1, seed_2'): load_pair(runs[2], 0, 7)


def test_activations_file_source_needs_a_model(runs, tmp_path):
    _, model, _ = runs
    np.save(tmp_path/'acts.npy', load_acts(model, 'resid_post', 0).numpy())
    out = tmp_path/'saes'
    main(['train-saes', str(tmp_path/'acts.npy'), '--d-sae', '16', '--k', '2', '--seeds', '0', '1', '--steps', '20',
          '--out', str(out), '--quiet'])
    with pytest.raises(HusaiError, match=r'activations file .*acts\.npy.*pass model='): open_run(out)
    d = load_pair(out, model=model, site='resid_post', layer=0)                # the fix works
    assert d.grid_a.shape == (16, P, P)
    with pytest.raises(HusaiError, match='d_in=32 but mlp_hidden.0'): open_run(out, model=model, site='mlp_hidden')


def test_moved_model_run_is_named(runs, tmp_path):
    root, model, out = runs
    moved_model, saes = tmp_path/'model', tmp_path/'saes'
    shutil.copytree(model, tmp_path/'m0'); shutil.copytree(out, saes)
    m = load_json(saes/'metrics.json'); m['source']['acts'] = str(tmp_path/'m0'); save_json(m, saes/'metrics.json')
    (tmp_path/'m0').rename(moved_model)
    with pytest.raises(HusaiError, match='no longer exists'): open_run(saes)
    assert open_run(saes, model=moved_model).acts.site == 'resid_post.0'        # site and layer from the record
    save_json({**m, 'source': None}, saes/'metrics.json')
    with pytest.raises(HusaiError, match='no record of the model'): open_run(saes)
