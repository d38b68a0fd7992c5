"""Speed of batched multi-seed SAE training (husai.train_sae) against a loop of single-seed runs of the
same code, and against dictionary_learning's TopK trainer, on the same data and step count.

    python benchmarks/bench_train_sae.py [--steps 200] [--seeds 8] [--no-anchor]
    python benchmarks/bench_train_sae.py --explain [--threads 1]   # where the time goes, S=1 vs S=8

`--explain` times each piece of one training step (encoder matmul, top-k, decode forward+backward, the
encoder's gradient matmul, Adam, decoder renormalisation) for 1 SAE and for 8 stacked SAEs, side by side,
and the whole step (from `train_saes` runs of two lengths). Batching can only remove the per-step fixed
cost (Python, dispatch, small ops); the per-seed work of every piece is compute- or memory-bound and
does not shrink when seeds are stacked. It prints the bound that follows: the ratio batching would reach
if everything but the two unavoidable dense matmuls were free.

Data: 12,769 activations of width 128 with a realistic spectrum (Gaussian, covariance eigenvalues
falling as 1/i in a random basis, plus an offset), TopK d_sae=1024, k=32, batch 256. Each variant runs
in its own subprocess, one after the other in this one run, so the ratios are measured side by side
on the same (shared, contended) CPU; peak memory is each subprocess's peak RSS above its RSS after
imports and data. Timings cover the whole `train_saes` call (initialisation, training, one final
evaluation on 12,769 samples) or, for the anchor, its `update` loop plus the same geometric median.
The anchor (dictionary_learning 0.1.0) is pip-installed with --no-deps into a throw-away folder under
/tmp (its `nnsight` import, used only by its activation buffer, is stubbed); if that fails, it is skipped
with a message.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

N, D, D_SAE, K, B = 12_769, 128, 1024, 32, 256
ANCHOR_DIR = Path(tempfile.gettempdir())/'husai-bench-anchor'


def make_acts():
    import torch
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    scale = (1.0 / torch.arange(1, D + 1)).sqrt()
    return (torch.randn(N, D, generator=g) * scale) @ Q.T + 0.5


def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode, steps, n_seeds, out, threads=None):
    import torch
    if threads: torch.set_num_threads(threads)
    acts = make_acts()
    from husai.sae import SAEConfig
    from husai.train_sae import TrainConfig, train_saes, split_acts
    base = rss_mb()
    cfg = SAEConfig('topk', d_in=D, d_sae=D_SAE, k=K)
    tc = TrainConfig(steps=steps, batch_size=B, log_every=steps)
    seeds = list(range(n_seeds))
    res = {'mode': mode}
    if mode == 'batched':
        t0 = time.perf_counter(); r = train_saes(acts, cfg, seeds, tc, progress=False); dt = time.perf_counter() - t0
        W = r.saes.W_dec.detach(); fvu = [r.metrics[s]['fvu_eval'] for s in seeds]
    elif mode == 'loop':
        t0 = time.perf_counter(); rs = [train_saes(acts, cfg, [s], tc, progress=False) for s in seeds]
        dt = time.perf_counter() - t0
        W = torch.cat([r.saes.W_dec.detach() for r in rs]); fvu = [r.metrics[s]['fvu_eval'] for r, s in zip(rs, seeds)]
    else:   # anchor: dictionary_learning's TopK trainer, one seed, the same batches
        import types
        sys.path.insert(0, str(ANCHOR_DIR))
        stub = types.ModuleType('nnsight'); stub.LanguageModel = object; sys.modules.setdefault('nnsight', stub)
        import dictionary_learning.trainers.top_k as tk
        Trainer = getattr(tk, 'TopKTrainer', None) or getattr(tk, 'TrainerTopK')
        train, _ = split_acts(acts, 0.1, 0)
        gen = torch.Generator().manual_seed(0)
        perm = torch.cat([torch.randperm(len(train), generator=gen) for _ in range(steps * B // len(train) + 1)])
        tr = Trainer(steps=steps, activation_dim=D, dict_size=D_SAE, k=K, layer=0, lm_name='bench', device='cpu', seed=0,
                     warmup_steps=min(1000, steps // 20), decay_start=int(0.8 * steps))   # husai's default schedule
        t0 = time.perf_counter()
        for step in range(steps): tr.update(step, train[perm[step * B:(step + 1) * B]])
        dt = time.perf_counter() - t0
        W, fvu, n_seeds = None, None, 1
    res.update(seconds=dt, seeds=n_seeds, samples_per_s=n_seeds * steps * B / dt, peak_mb=rss_mb(), extra_mb=rss_mb() - base,
               fvu_eval=fvu)
    if W is not None: torch.save(W, out + '.pt')
    Path(out).write_text(json.dumps(res))


def tm(f, reps=30):
    import time
    f(); t0 = time.perf_counter()
    for _ in range(reps): f()
    return (time.perf_counter() - t0) / reps * 1e3


def explain(n_seeds, threads=None):
    "Per-piece timings of one TopK training step for 1 and `n_seeds` stacked SAEs (ms per seed)."
    import time, torch, torch.nn.functional as F
    if threads: torch.set_num_threads(threads)
    from husai.sae import SAEConfig, init_saes, topk_values, sparse_decode
    from husai.train_sae import TrainConfig, train_saes
    acts = make_acts(); x = acts[:B].contiguous()
    cfg = SAEConfig('topk', d_in=D, d_sae=D_SAE, k=K)
    rows = {}
    for S in (1, n_seeds):
        sae = init_saes(cfg, range(S), acts)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
        with torch.no_grad(): pre = sae.pre_acts(x)
        idx = topk_values(pre, K)[1]
        vals = F.relu(pre.gather(-1, idx)).requires_grad_()
        W = sae.W_dec.detach().clone().requires_grad_()
        g = torch.randn_like(vals)
        def enc_grad():
            G = torch.zeros_like(pre).scatter_(-1, idx, g)
            return torch.bmm(x.unsqueeze(0).expand(S, -1, -1).transpose(1, 2), G)
        def decode(): sparse_decode(W, vals, idx).pow(2).sum().backward()
        for p in sae.parameters(): p.grad = torch.randn_like(p)
        def step_time(steps):
            t0 = time.perf_counter()
            train_saes(acts, cfg, list(range(S)), TrainConfig(steps=steps, batch_size=B, log_every=steps), progress=False)
            return time.perf_counter() - t0
        step_time(5)
        whole = (min(step_time(120) for _ in range(2)) - min(step_time(20) for _ in range(2))) / 100 * 1e3
        rows[S] = {'encoder matmul x W_enc': tm(lambda: sae.pre_acts(x)),
                   'top-k selection': tm(lambda: topk_values(pre, K)),
                   'gather + relu': tm(lambda: F.relu(pre.gather(-1, idx))),
                   'sparse decode fwd+bwd': tm(decode),
                   'encoder gradient matmul': tm(enc_grad),
                   'Adam step': tm(opt.step),
                   'decoder renorm + grad projection': tm(lambda: (sae.remove_parallel_grad_(), sae.normalize_decoder_())),
                   'whole training step': whole}
    print(f"one TopK step, batch {B}, d_in {D}, d_sae {D_SAE}, k {K}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; ms per seed (S=1 | S={n_seeds} stacked) and the gain from stacking")
    for name in rows[1]:
        a, b = rows[1][name], rows[n_seeds][name] / n_seeds
        print(f"  {name:34s} {a:7.3f} | {b:7.3f}   {a / b:5.2f}x")
    parts1 = sum(v for k_, v in rows[1].items() if k_ != 'whole training step')
    fixed = max(rows[1]['whole training step'] - parts1, 0.0)
    floor = (rows[n_seeds]['encoder matmul x W_enc'] + rows[n_seeds]['encoder gradient matmul']) / n_seeds
    print(f"fixed per-step cost of a single run (whole step - its pieces): {fixed:.3f} ms; "
          f"unavoidable matmuls per seed when stacked: {floor:.3f} ms")
    fwd = rows[n_seeds]['encoder matmul x W_enc'] / n_seeds
    bound = lambda e: (fixed + e) / (fixed / n_seeds + e)
    print(f"measured whole-step gain {rows[1]['whole training step'] * n_seeds / rows[n_seeds]['whole training step']:.2f}x; "
          f"bound if everything but the two matmuls were free: {bound(floor):.2f}x; "
          f"if even the encoder gradient were free (only the forward matmul, which top-k needs, left): {bound(fwd):.2f}x")


def run_child(mode, steps, n_seeds, tmp, threads=None):
    out = str(Path(tmp)/mode)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parent.parent)}
    p = subprocess.run([sys.executable, __file__, '--child', mode, '--steps', str(steps), '--seeds', str(n_seeds),
                        '--out', out] + (['--threads', str(threads)] if threads else []), env=env, capture_output=True, text=True)
    if p.returncode != 0: return None, p.stderr[-2000:]
    return json.loads(Path(out).read_text()), None


def install_anchor():
    if (ANCHOR_DIR/'dictionary_learning').exists(): return None
    p = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(ANCHOR_DIR),
                        'dictionary-learning==0.1.0', 'einops'], capture_output=True, text=True)
    return None if p.returncode == 0 else p.stderr[-1000:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--seeds', type=int, default=8)
    ap.add_argument('--no-anchor', action='store_true')
    ap.add_argument('--threads', type=int, default=None, help='torch threads in each run (default: torch\'s)')
    ap.add_argument('--explain', action='store_true', help='time the pieces of one step, 1 vs --seeds stacked SAEs')
    ap.add_argument('--child'); ap.add_argument('--out')
    a = ap.parse_args()
    if a.explain: return explain(a.seeds, a.threads)
    if a.child: return child(a.child, a.steps, a.seeds, a.out, a.threads)
    import torch
    print(f'TopK SAE d_in {D} -> d_sae {D_SAE}, k {K}, batch {B}, {a.steps} steps, {a.seeds} seeds, '
          f'{N} activations; torch {torch.__version__}, {a.threads or torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}')
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for mode in ('loop', 'batched'):
            res[mode], err = run_child(mode, a.steps, a.seeds, tmp, a.threads)
            if err: sys.exit(f'{mode} failed:\n{err}')
        if not a.no_anchor:
            err = install_anchor()
            if err is None: res['anchor'], err = run_child('anchor', a.steps, 1, tmp, a.threads)
            if err: print(f'anchor skipped (dictionary_learning could not be installed or run): {err.strip()[-300:]}')
        for m, r in res.items():
            if r: print(f"{m:8s} {r['seeds']} seed(s) {r['seconds']:7.1f} s  {r['samples_per_s']:9.0f} samples/s in total "
                        f"({r['samples_per_s'] / r['seeds']:8.0f} per seed)  peak RSS {r['peak_mb']:6.0f} MB (+{r['extra_mb']:.0f} MB for training)")
        lp, bt = res['loop'], res['batched']
        print(f"batched / loop of single runs (same code): {bt['samples_per_s'] / lp['samples_per_s']:.2f}x throughput")
        if res.get('anchor'):
            print(f"batched ({a.seeds} seeds) / dictionary_learning TopK (1 seed; a loop of {a.seeds} scales linearly): "
                  f"{bt['samples_per_s'] / res['anchor']['samples_per_s']:.2f}x throughput")
            print(f"husai single-seed runs / dictionary_learning: {lp['samples_per_s'] / res['anchor']['samples_per_s']:.2f}x")
        Wl, Wb = torch.load(Path(tmp)/'loop.pt'), torch.load(Path(tmp)/'batched.pt')
        print(f"equality: max |W_dec batched - W_dec single| over {a.seeds} seeds = {(Wl - Wb).abs().max().item():.2e}; "
              f"max |fvu_eval difference| = {max(abs(x - y) for x, y in zip(lp['fvu_eval'], bt['fvu_eval'])):.2e}; "
              f"fvu_eval per seed {[round(f, 4) for f in bt['fvu_eval']]}")


if __name__ == '__main__':
    main()
