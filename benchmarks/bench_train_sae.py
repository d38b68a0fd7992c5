"""Speed of batched multi-seed SAE training (husai.train_sae) against the same seeds trained one after another
by husai itself, by SAELens' own trainer and by dictionary_learning's own trainer, on the same data and steps.

    python benchmarks/bench_train_sae.py [--steps 200] [--seeds 8] [--threads 1 2] [--no-anchor]
    python benchmarks/bench_train_sae.py --explain [--threads 1]   # where the time goes, S=1 vs S=8

Data: 12,769 activations of width 128 with a realistic spectrum (Gaussian, covariance eigenvalues
falling as 1/i in a random basis, plus an offset), TopK d_sae=1024, k=32, batch 256. Each variant runs
in its own subprocess, one after the other in this one run and at each thread count, so the ratios are
measured side by side on the same (shared, contended) CPU. Each reports wall seconds and the CPU
seconds of its process (on a loaded machine the CPU time is the steadier figure at 1 thread).

- husai batched: one `train_saes` call for all seeds (initialisation, training, the final evaluation
  on all 12,769 samples: the anchors are not charged for an evaluation); the time inside its training
  steps is also reported, and ratios are printed for whole runs and for the training steps only;
- husai loop: one `train_saes` call per seed;
- SAELens (`sae_lens.SAETrainer` + `TopKTrainingSAE`, its defaults) and dictionary_learning 0.1.0
  (`TopKTrainer`): one trainer per seed, one after the other, fed the same batches (husai's training
  split in one shuffled order), with husai's schedule (warm-up 5%, linear decay over the last 20%).
  Install them beside husai to run them: `pip install sae-lens`, `pip install dictionary-learning==0.1.0`
  then `pip uninstall -y torchvision` (its PyPI wheel breaks the import here); `nnsight`, which
  dictionary_learning imports for its activation buffer only, is stubbed if missing. They are
  benchmark-only, not husai dependencies; a missing one is skipped with a message.

`--explain` times each piece of one training step for 1 SAE and for 8 stacked SAEs, side by side.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time, types
from pathlib import Path

N, D, D_SAE, K, B = 12_769, 128, 1024, 32, 256


def make_acts():
    import torch
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    scale = (1.0 / torch.arange(1, D + 1)).sqrt()
    return (torch.randn(N, D, generator=g) * scale) @ Q.T + 0.5


def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batches(acts, steps):
    "husai's training split, shuffled once per epoch: the anchors' batches."
    import torch
    from husai.train_sae import split_acts
    train, _ = split_acts(acts, 0.1, 0)
    gen = torch.Generator().manual_seed(0)
    perm = torch.cat([torch.randperm(len(train), generator=gen) for _ in range(steps * B // len(train) + 1)])
    return [train[perm[i * B:(i + 1) * B]] for i in range(steps)]


def _dictionary_learning(seed, steps, batches):
    sys.modules.setdefault('nnsight', types.SimpleNamespace(LanguageModel=object))
    import dictionary_learning.trainers.top_k as tk
    tr = tk.TopKTrainer(steps=steps, activation_dim=D, dict_size=D_SAE, k=K, layer=0, lm_name='bench', device='cpu', seed=seed,
                        warmup_steps=min(1000, steps // 20), decay_start=int(0.8 * steps))
    for step in range(steps): tr.update(step, batches[step])


def _saelens(seed, steps, batches):
    import torch
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer
    torch.manual_seed(seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D, d_sae=D_SAE, k=K, dtype='float32', device='cpu'))
    cfg = SAETrainerConfig(total_training_samples=steps * B, train_batch_size_samples=B, lr=2e-4 / (D_SAE / 2 ** 14) ** 0.5,
                           lr_end=0.0, lr_warm_up_steps=min(1000, steps // 20), lr_decay_steps=steps // 5, device='cpu')
    SAETrainer(cfg, sae, iter(batches)).fit()


def child(mode, steps, n_seeds, out, threads=None):
    import torch
    if threads: torch.set_num_threads(threads)
    os.environ['TQDM_DISABLE'] = '1'
    acts = make_acts()
    from husai.sae import SAEConfig
    from husai.train_sae import TrainConfig, train_saes
    base = rss_mb()
    cfg = SAEConfig('topk', d_in=D, d_sae=D_SAE, k=K)
    tc = TrainConfig(steps=steps, batch_size=B, log_every=steps)
    seeds = list(range(n_seeds))
    W, fvu = None, None
    batches = _batches(acts, steps) if mode in ('saelens', 'dictionary_learning') else None
    from husai import train_sae
    spent = [0.0, 0.0]   # wall and CPU seconds inside husai's training steps (the anchors time nothing else)
    step = train_sae.TrainRun.step
    def timed_step(self):
        t, c = time.perf_counter(), time.process_time(); step(self)
        spent[0] += time.perf_counter() - t; spent[1] += time.process_time() - c
    train_sae.TrainRun.step = timed_step
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == 'batched':
        r = train_saes(acts, cfg, seeds, tc, progress=False)
        W, fvu = r.saes.W_dec.detach(), [r.metrics[s]['fvu_eval'] for s in seeds]
    elif mode == 'loop':
        rs = [train_saes(acts, cfg, [s], tc, progress=False) for s in seeds]
        W, fvu = torch.cat([r.saes.W_dec.detach() for r in rs]), [r.metrics[s]['fvu_eval'] for r, s in zip(rs, seeds)]
    else:
        for s in seeds: (_saelens if mode == 'saelens' else _dictionary_learning)(s, steps, batches)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if mode not in ('batched', 'loop'): spent = [dt, cpu]
    res = dict(mode=mode, seconds=dt, cpu_seconds=cpu, step_seconds=spent[0], step_cpu_seconds=spent[1], seeds=n_seeds, samples_per_s=n_seeds * steps * B / dt,
               peak_mb=rss_mb(), extra_mb=rss_mb() - base, fvu_eval=fvu)
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
    from husai.sae import SAEConfig, init_saes, topk_values, sparse_decode, pick
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
        def enc_grad(): (pick(sae.pre_acts(x), idx) * g).sum().backward()   # the forward product too
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
                   'encoder fwd + sparse bwd (pick)': tm(enc_grad),
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
    floor = rows[n_seeds]['encoder matmul x W_enc'] / n_seeds
    print(f"fixed per-step cost of a single run (whole step - its pieces): {fixed:.3f} ms; "
          f"the unavoidable encoder product per seed when stacked: {floor:.3f} ms")
    fwd = rows[n_seeds]['encoder matmul x W_enc'] / n_seeds
    bound = lambda e: (fixed + e) / (fixed / n_seeds + e)
    print(f"measured whole-step gain {rows[1]['whole training step'] * n_seeds / rows[n_seeds]['whole training step']:.2f}x; "
          f"bound if everything but the two matmuls were free: {bound(floor):.2f}x; "
          f"if even the encoder gradient were free (only the forward matmul, which top-k needs, left): {bound(fwd):.2f}x")


def run_child(mode, steps, n_seeds, tmp, threads=None):
    out = str(Path(tmp)/f'{mode}-{threads}')
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parent.parent)}
    p = subprocess.run([sys.executable, __file__, '--child', mode, '--steps', str(steps), '--seeds', str(n_seeds),
                        '--out', out] + (['--threads', str(threads)] if threads else []), env=env, capture_output=True, text=True)
    if p.returncode != 0: return None, p.stderr[-2000:]
    return json.loads(Path(out).read_text()), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--seeds', type=int, default=8)
    ap.add_argument('--no-anchor', action='store_true')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch threads in each run (each count in turn)')
    ap.add_argument('--explain', action='store_true', help='time the pieces of one step, 1 vs --seeds stacked SAEs')
    ap.add_argument('--child'); ap.add_argument('--out')
    a = ap.parse_args()
    if a.explain: return explain(a.seeds, a.threads[0])
    if a.child: return child(a.child, a.steps, a.seeds, a.out, a.threads[0])
    import torch
    print(f'TopK SAE d_in {D} -> d_sae {D_SAE}, k {K}, batch {B}, {a.steps} steps, {a.seeds} seeds, {N} activations; '
          f'torch {torch.__version__}, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs')
    anchors = [] if a.no_anchor else ['saelens', 'dictionary_learning']
    with tempfile.TemporaryDirectory() as tmp:
        for th in a.threads:
            res = {}
            for mode in ['batched', 'loop'] + anchors:
                res[mode], err = run_child(mode, a.steps, a.seeds, tmp, th)
                if err and mode in ('batched', 'loop'): sys.exit(f'{mode} failed:\n{err}')
                if err: print(f'{mode} skipped (not installed, or it failed): {err.strip().splitlines()[-1][-300:]}')
            print(f'--- {th} thread(s), load {os.getloadavg()[0]:.1f}')
            for m, r in res.items():
                if r: print(f"{m:20s} {r['seeds']} seeds {r['seconds']:7.1f} s wall {r['cpu_seconds']:7.1f} s CPU  "
                            f"(steps {r['step_seconds']:6.1f} s wall {r['step_cpu_seconds']:6.1f} s CPU) peak RSS {r['peak_mb']:5.0f} MB (+{r['extra_mb']:.0f})")
            bt = res['batched']
            for m in ['loop'] + anchors:
                if res.get(m): print(f"husai batched vs {m} one seed after another: whole runs {res[m]['seconds'] / bt['seconds']:.2f}x (wall), "
                                     f"{res[m]['cpu_seconds'] / bt['cpu_seconds']:.2f}x (CPU); training steps only "
                                     f"{res[m]['step_seconds'] / bt['step_seconds']:.2f}x (wall), {res[m]['step_cpu_seconds'] / bt['step_cpu_seconds']:.2f}x (CPU)")
            Wl, Wb = torch.load(Path(tmp)/f'loop-{th}.pt'), torch.load(Path(tmp)/f'batched-{th}.pt')
            print(f"equality: max |W_dec batched - W_dec single| over {a.seeds} seeds = {(Wl - Wb).abs().max().item():.2e}; "
                  f"max |fvu_eval difference| = {max(abs(x - y) for x, y in zip(res['loop']['fvu_eval'], bt['fvu_eval'])):.2e}; "
                  f"fvu_eval per seed {[round(f, 4) for f in bt['fvu_eval']]}")


if __name__ == '__main__':
    main()
