"Grokking: checkpoints, resume, cache, corrupt files, grokking detection, Fourier sparsity and the CLI."
import json, subprocess, sys, time
import pytest, torch
from husai.core import HusaiError, load_json
from husai.grokking import (GrokConfig, grok_config, train_grokking, load_run, saved_steps, fourier_embedding_norms,
                            key_frequencies, fourier_gini, fourier_top_k, primitive_root, PRESETS)
from husai.transformer import Transformer
from husai.cli import main

TINY = dict(task='add', p=11, train_frac=0.5, d_model=32, n_heads=2, d_head=16, d_mlp=64, steps=40,
            log_every=10, checkpoint_every=20)

@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch): monkeypatch.setenv('HUSAI_CACHE', str(tmp_path / 'cache'))

def test_checkpoint_round_trip(tmp_path):
    cfg = GrokConfig(**TINY)
    run = train_grokking(cfg, out=tmp_path / 'r', progress=False)
    m = load_json(run / 'metrics.json')
    assert m['done'] and m['steps'] == 40
    assert {0, 20, 40} <= set(saved_steps(run)) and m['checkpoints'] == saved_steps(run)
    assert [h['step'] for h in m['history']] == [0, 10, 20, 30, 40]
    model, cfg2, m2 = load_run(run)
    assert cfg2 == cfg and m2 == m and not model.training
    # the loaded model reproduces the logged final accuracy (eval mode, held-out pairs)
    ds = cfg.dataset()
    with torch.no_grad(): acc = (model(ds.inputs[ds.test_idx]).argmax(-1) == ds.targets[ds.test_idx]).double().mean().item()
    assert acc == pytest.approx(m['test_acc'])
    m0, _, _ = load_run(run, step=0)
    init = Transformer(cfg.model_config(), seed=cfg.seed)
    for a, b in zip(m0.state_dict().values(), init.state_dict().values()): assert torch.equal(a, b)
    with pytest.raises(HusaiError, match='no checkpoint at step'): load_run(run, step=7)

@pytest.mark.parametrize('killed_at', [0, 20])
def test_resume_equals_uninterrupted(tmp_path, killed_at):
    full = train_grokking(GrokConfig(**TINY), out=tmp_path / 'full', progress=False)
    # an interrupted run: train to step `killed_at` with the same config, as if killed after that checkpoint
    # (step 0 is the checkpoint written before the first step, when Adam has no state yet)
    part = tmp_path / 'part'
    train_grokking(GrokConfig(**TINY), out=part, progress=False)
    for s in saved_steps(part):
        if s > killed_at: (part / f'step_{s:07d}.safetensors').unlink()
    m = load_json(part / 'metrics.json')      # as written at the killed_at checkpoint
    m.update(done=False, history=[h for h in m['history'] if h['step'] <= killed_at],
             checkpoints=[s for s in m['checkpoints'] if s <= killed_at])
    (part / 'metrics.json').write_text(json.dumps(m))
    assert saved_steps(part)[-1] == killed_at
    train_grokking(GrokConfig(**TINY), out=part, progress=False)
    a, _, ma = load_run(full); b, _, mb = load_run(part)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()): torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    for ha, hb in zip(ma['history'], mb['history']):
        assert ha['step'] == hb['step'] and ha['test_acc'] == pytest.approx(hb['test_acc']) and ha['train_loss'] == pytest.approx(hb['train_loss'], rel=1e-5)

def test_corrupt_and_mismatched_checkpoints(tmp_path):
    cfg = GrokConfig(**TINY)
    run = train_grokking(cfg, out=tmp_path / 'r', progress=False)
    m = load_json(run / 'metrics.json'); m['done'] = False
    (run / 'metrics.json').write_text(json.dumps(m))
    last = run / 'step_0000040.safetensors'
    before = last.stat().st_size
    last.write_bytes(b'not a safetensors file')
    with pytest.raises(HusaiError, match='corrupt'): load_run(run)
    with pytest.warns(UserWarning, match='damaged'): train_grokking(cfg, out=run, progress=False)   # set aside, retrained
    assert (run / 'step_0000040.safetensors.damaged').read_bytes() == b'not a safetensors file'   # nothing lost
    # another config in the same folder
    with pytest.raises(HusaiError, match='another config'): train_grokking(GrokConfig(**{**TINY, 'seed': 1}), out=run, progress=False)
    # a checkpoint whose weights have other shapes
    other = train_grokking(GrokConfig(**{**TINY, 'd_mlp': 32}), out=tmp_path / 'o', progress=False)
    last.write_bytes((other / 'step_0000040.safetensors').read_bytes())
    with pytest.raises(HusaiError, match='do not match'): load_run(run)
    (run / 'config.json').write_text('{"config": ')
    with pytest.raises(HusaiError, match='corrupt'): train_grokking(cfg, out=run, progress=False)

def _train_tiny_in(folder):
    from husai.grokking import GrokConfig, train_grokking
    from husai.core import load_json
    run = train_grokking(GrokConfig(**TINY), out=folder, progress=False)
    return load_json(run / 'metrics.json')

def test_two_processes_train_one_run(tmp_path):
    # two processes ask for the same run at once (nbdev_test runs notebooks side by side): one trains,
    # the other waits for it and reuses the finished run instead of resuming from a half-made one
    import multiprocessing as mp
    folder = tmp_path / 'shared'
    with mp.get_context('spawn').Pool(2) as pool:
        ms = pool.map(_train_tiny_in, [folder, folder])
    alone = _train_tiny_in(tmp_path / 'alone')
    for m in ms:
        assert m['done'] and m['checkpoints'] == saved_steps(folder) == [0, 20, 40]
        assert [h['test_acc'] for h in m['history']] == [h['test_acc'] for h in alone['history']]
    assert ms[0] == ms[1]   # the second reused the first's metrics.json: identical, timings included

def test_cache_reuse(tmp_path):
    cfg = GrokConfig(**TINY)
    run = train_grokking(cfg, progress=False)
    assert run.parent.name == 'transformer' and str(tmp_path / 'cache') in str(run)
    stamp = (run / 'metrics.json').stat().st_mtime_ns
    t = time.perf_counter()
    assert train_grokking(GrokConfig(**TINY), progress=False) == run
    assert time.perf_counter() - t < 2.0 and (run / 'metrics.json').stat().st_mtime_ns == stamp   # not retrained
    assert train_grokking(GrokConfig(**{**TINY, 'seed': 1}), progress=False) != run

def test_tiny_run_groks_and_its_spectrum_is_sparse(tmp_path):
    cfg = GrokConfig(task='add', p=43, train_frac=0.6, d_model=64, n_heads=4, d_head=16, d_mlp=256, lr=5e-3,
                     steps=1000, log_every=25, checkpoint_every=500, stop_after_grok=50)
    run = train_grokking(cfg, out=tmp_path / 'g', progress=False)
    m = load_json(run / 'metrics.json')
    assert m['test_acc'] >= 0.99 and m['grok_step'] is not None and m['memorise_step'] <= m['grok_step']
    assert m['steps'] == m['grok_step'] + 50
    init, _, _ = load_run(run, step=0); final, _, _ = load_run(run)
    assert fourier_gini(final) > fourier_gini(init) + 0.2
    assert fourier_top_k(final, k=3) > fourier_top_k(init, k=3)
    assert len(key_frequencies(final)) < len(key_frequencies(init))

def test_fourier_measures():
    p = 17; x = torch.arange(p, dtype=torch.float64)
    W = torch.stack([torch.cos(2 * torch.pi * 4 * x / p), torch.sin(2 * torch.pi * 4 * x / p), torch.cos(2 * torch.pi * 7 * x / p)], 1)
    n = fourier_embedding_norms(W)
    assert n.shape == (9,) and set(n.topk(2).indices.tolist()) == {4, 7}
    torch.testing.assert_close(n.double().pow(2).sum(), W.pow(2).sum(), rtol=1e-5, atol=1e-5)
    assert key_frequencies(W) == [4, 7] and fourier_gini(torch.randn(113, 128)) < 0.2
    # multiplicative basis: a function of the discrete log with one frequency
    g = primitive_root(p); order = [pow(g, i, p) for i in range(p - 1)]
    Wm = torch.zeros(p, 2, dtype=torch.float64)
    for i, a in enumerate(order): Wm[a, 0] = torch.cos(torch.tensor(2 * torch.pi * 3 * i / (p - 1)))
    assert key_frequencies(Wm, 'mul') == [3] and key_frequencies(Wm, 'add') != [3]

def test_presets_and_config_errors():
    assert PRESETS['nanda']['p'] == 113 and grok_config('nanda').train_frac == 0.3 and grok_config('nanda').weight_decay == 1.0
    assert grok_config('nanda').betas == (0.9, 0.98) and grok_config('nanda').d_mlp == 512
    with pytest.raises(HusaiError): grok_config('nope')
    with pytest.raises(HusaiError): grok_config('quick', p=4).dataset()
    with pytest.raises(HusaiError): GrokConfig(steps=0)

def test_cli_writes_metrics(tmp_path, capsys):
    out = tmp_path / 'cli'
    rc = main(['grok', '--task', 'mul', '--p', '11', '--seed', '0', '--preset', 'quick', '--steps', '30',
               '--log-every', '10', '--out', str(out), '--device', 'cpu', '--quiet'])
    assert rc == 0
    m = load_json(out / 'metrics.json')
    for k in ('test_acc', 'train_acc', 'grok_step', 'steps', 'key_frequencies', 'memorise_step', 'history'):
        assert k in m
    assert m['steps'] == 30 and m['fourier_basis'] == 'mul' and list(out.glob('step_*.safetensors'))
    assert 'test acc' in capsys.readouterr().out

@pytest.mark.parametrize('argv,kind', [(['grok', '--p', '4', '--steps', '5'], 'husai'), (['grok', '--task', 'div'], 'argparse'),
                                       (['grok', '--steps', 'many'], 'argparse'), (['grok', '--preset', 'huge'], 'argparse'),
                                       (['grok', '--train-frac', '1.5', '--steps', '5'], 'husai'),
                                       (['grok', '--device', 'cuda:7', '--steps', '5'], 'husai'),
                                       (['grok', '--steps', '0'], 'husai'), (['grok', '--threads', '0', '--steps', '5'], 'husai')])
def test_cli_bad_input_exits_2(argv, kind, tmp_path, capsys):
    argv = [*argv, '--out', str(tmp_path / 'x'), '--quiet']
    if kind == 'argparse':
        with pytest.raises(SystemExit) as e: main(argv)
        assert e.value.code == 2
    else:
        assert main(argv) == 2
        assert 'husai grok: error:' in capsys.readouterr().err
    assert not (tmp_path / 'x' / 'metrics.json').exists()

def test_console_script_exit_code(tmp_path):
    "The real process exits 2 with one line of error and no traceback."
    r = subprocess.run([sys.executable, '-c', 'import sys; from husai.cli import main; sys.exit(main(sys.argv[1:]))',
                        'grok', '--p', '4', '--out', str(tmp_path / 'x')], capture_output=True, text=True)
    assert r.returncode == 2 and 'prime' in r.stderr and 'Traceback' not in r.stderr

def _bits(f): return {k: v.clone() for k, v in __import__('husai.core', fromlist=['x']).load_tensors(f).items()}

def test_damaged_final_checkpoint_is_set_aside_and_retrained_to_the_same_bits(tmp_path):
    run = train_grokking(GrokConfig(**TINY), out=tmp_path / 'r', progress=False)
    final = run / 'step_0000040.safetensors'
    want = _bits(final)
    final.write_bytes(final.read_bytes()[:len(final.read_bytes()) // 2])        # a copy cut short
    with pytest.warns(UserWarning, match='damaged'): train_grokking(GrokConfig(**TINY), out=run, progress=False)
    got = _bits(final)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert (run / 'step_0000040.safetensors.damaged').exists() and load_json(run / 'metrics.json')['done']

def test_stray_files_and_half_writes(tmp_path):
    run = train_grokking(GrokConfig(**TINY), out=tmp_path / 'r', progress=False)
    (run / 'step_abc.safetensors').write_text('x'); (run / '.step_0000060.safetensors.k2.tmp').write_bytes(b'half')
    assert saved_steps(run) == [0, 20, 40]
    model, _, _ = load_run(run)                                                   # no ValueError from the stray name
    train_grokking(GrokConfig(**TINY), out=run, progress=False)                  # reuse, under the lock: temp files go
    assert not list(run.glob('.*.tmp'))

@pytest.mark.parametrize('content', ['[1, 2]', '{"steps": 40}', '{"steps": "x", "history": [], "checkpoints": []}'])
def test_malformed_metrics_is_an_error_naming_the_file(tmp_path, content):
    run = train_grokking(GrokConfig(**TINY), out=tmp_path / 'r', progress=False)
    (run / 'metrics.json').write_text(content)
    with pytest.raises(HusaiError, match='metrics.json: not the metrics of a grokking run'): load_run(run)
    with pytest.raises(HusaiError, match='metrics.json: not the metrics'): train_grokking(GrokConfig(**TINY), out=run, progress=False)

def test_grok_refuses_a_folder_of_another_kind_and_keeps_its_files(tmp_path):
    other = tmp_path / 'saes'; other.mkdir()
    (other / 'metrics.json').write_text('{"seeds": [0]}')
    with pytest.raises(HusaiError, match='not a grokking run'): train_grokking(GrokConfig(**TINY), out=other, progress=False)
    (other / 'config.json').write_text('{"kind": "husai.train_sae.TrainConfig", "config": {}}')
    with pytest.raises(HusaiError, match='not a grokking run'): train_grokking(GrokConfig(**TINY), out=other, progress=False)
    assert (other / 'metrics.json').read_text() == '{"seeds": [0]}'

def test_a_modulus_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    t = time.perf_counter()
    assert main(['grok', '--p', '1000003', '--out', str(tmp_path / 'g'), '--quiet']) == 2
    assert 'choose a smaller p' in capsys.readouterr().err and time.perf_counter() - t < 10
