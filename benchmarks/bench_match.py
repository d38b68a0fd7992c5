"""Optimal one-to-one matching of two SAE dictionaries: husai's certified sparse `match` against dense solvers.

    python benchmarks/bench_match.py                      # 16,384 x 16,384 latents in d 768: husai, scipy, lap
    python benchmarks/bench_match.py --m 32768 65536 --only husai          # larger, husai alone (dense cannot)
    python benchmarks/bench_match.py --device cuda --m 131072 --d 4096 --only husai   # on a GPU
    python benchmarks/bench_match.py --pair               # what `husai stability` needs for two SAEs (see below)

The dictionaries are SAE-like: latents share a low-rank "family" component (so near neighbours are
closer than in an isotropic cloud), a fraction `--shared` of B's latents are noisy copies of A's
(partner cosines spread over about 0.5-0.95), the rest have no partner, and B is shuffled.

Contenders, each in a fresh subprocess that builds its inputs first:
- `scipy`: the cosine matrix built in float32 by one torch product (the cheapest dense route; what
  Song et al.'s code does), then `scipy.optimize.linear_sum_assignment(maximize=True)`;
- `lap`: the same matrix, then `lap.lapjv` (Jonker-Volgenant; PyPI `lap`) on its negation, if installed;
- `husai`: `husai.stability.match(method='sparse')`, which never holds the matrix and proves its optimum.

"peak" is the high-water mark of resident memory during the call, after `/proc/self/clear_refs`
reset it (the inputs are built before), and "extra" that minus the resident memory before the call;
on CUDA the peak of torch's allocator is printed too. husai runs before and after the dense solvers
(the machine may be shared; the mean of the two is used), and the RESULT lines print the ratios.

`--pair` times what a stability report of two SAEs needs (decoders and encoders, the encoder
pair built like the decoder pair with the same partners): `separate` calls `mmcs`,
`hungarian_mcc` and `shared_fraction` one after another; `pair` calls `stability_pair` and then
the three `isotropic_baseline`s, cold (a fresh cache folder: the Monte Carlo draws are made) and
warm (from that cache).
"""
import argparse, json, os, subprocess, sys, time

def _kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1])
    return -1

def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False

def sae_pair(m, d, shared=0.6, seed=0, rank=64, device='cpu'):
    "Two SAE-like dictionaries [m, d] (see the module docstring)."
    import torch
    g = torch.Generator(device=device).manual_seed(seed)
    F = torch.randn(rank, d, generator=g, device=device) / d ** 0.5
    def latents(n):
        return (torch.randn(n, d, generator=g, device=device) / d ** 0.5
                + 0.2 * torch.randn(n, rank, generator=g, device=device) @ F)
    A = latents(m); D = A.clone()
    A += 0.35 * torch.rand(m, 1, generator=g, device=device) * latents(m)
    n = int(shared * m)
    B = latents(m)
    B[:n] = D[:n] + (0.2 + 0.8 * torch.rand(n, 1, generator=g, device=device)) * latents(n)
    return A, B[torch.randperm(m, generator=g, device=device)]

def one(case, m, d, shared, device, budget):
    import numpy as np, torch
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
    A, B = sae_pair(m, d, shared, device=device)
    out = {}
    def dense_cos():
        An, Bn = A / A.norm(dim=1, keepdim=True), B / B.norm(dim=1, keepdim=True)
        return (An @ Bn.T).cpu().numpy()
    if case == 'scipy':
        from scipy.optimize import linear_sum_assignment
        def fn():
            C = dense_cos(); r, c = linear_sum_assignment(C, maximize=True)
            return float(C[r, c].astype(np.float64).mean())
    elif case == 'lap':
        import lap
        def fn():
            C = dense_cos(); cost = np.negative(C, dtype=np.float64)
            _, x, _ = lap.lapjv(cost)
            return float(C[np.arange(m), x].astype(np.float64).mean())
    elif case in ('pair', 'separate'):
        import tempfile
        from husai.stability import Weights, stability_pair, mmcs, hungarian_mcc, shared_fraction
        from husai.baselines import isotropic_baseline
        X, Y = sae_pair(m, 2 * d, shared, device=device)          # decoder | encoder, partners shared by both
        s1, s2 = Weights(X[:, :d], X[:, d:].T), Weights(Y[:, :d], Y[:, d:].T)
        root = tempfile.mkdtemp()
        def base():
            t0 = time.perf_counter()
            vals = {mt: isotropic_baseline(mt, d, m, root=root, device=device)['value'] for mt in ('mmcs', 'hungarian_mcc', 'shared_fraction')}
            return vals, time.perf_counter() - t0
        def fn():
            if case == 'separate':
                r = {'mmcs': mmcs(s1, s2, device=device), 'hungarian_mcc': hungarian_mcc(s1, s2, device=device),
                     'shared_fraction': shared_fraction(s1, s2, device=device)}
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                r = stability_pair(s1, s2, device=device, budget=budget)
                out['metrics_s'], out['metrics_cpu_s'] = time.perf_counter() - t0, time.process_time() - c0
                out['exact'] = bool(r['exact'])
                (b, out['baselines_cold_s']), (_, out['baselines_warm_s']) = base(), base()
                out['baselines'] = b
                out['total_warm_s'] = out['metrics_s'] + out['baselines_warm_s']
            out['metrics'] = {k: r[k] for k in ('mmcs', 'hungarian_mcc', 'shared_fraction')}
            return r['hungarian_mcc']
    elif case == 'husai':
        from husai.stability import match
        def fn():
            r = match(A, B, method='sparse', device=device, budget=budget)
            out.update(exact=r.exact, gap=r.gap, upper_bound=r.upper_bound, info=r.info)
            return r.mean
    else: raise SystemExit(f'unknown case {case}')
    if device.startswith('cuda'): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    rss0 = _kb('VmRSS'); ok = _reset_peak()
    t, c0 = time.perf_counter(), time.process_time(); v = fn()
    if device.startswith('cuda'): torch.cuda.synchronize(); out['cuda_peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    dt = time.perf_counter() - t
    hwm = _kb('VmHWM')
    out.update(case=case, m=m, d=d, value=float(v), time_s=dt, cpu_s=time.process_time() - c0, peak_mb=hwm / 1024, extra_mb=(hwm - rss0) / 1024,
               peak_reset=ok, threads=torch.get_num_threads(), device=device)
    print(json.dumps(out))

def run(case, m, d, shared, device):
    cmd = [sys.executable, __file__, '--one', case, '--m', str(m), '--d', str(d), '--shared', str(shared), '--device', device,
           '--budget-mb', str(BUDGET_MB)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'{case} failed:\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])

def show(r):
    s = (f"{r['case']:6s} m={r['m']:7d} d={r['d']:5d}  time {r['time_s']:8.2f} s (CPU {r.get('cpu_s', float('nan')):7.1f} s)  peak RSS {r['peak_mb']:7.0f} MB "
         f"(+{r['extra_mb']:6.0f} MB during the call)  mean cosine {r['value']:.8f}")
    if 'cuda_peak_mb' in r: s += f"  CUDA peak {r['cuda_peak_mb']:.0f} MB"
    if 'exact' in r:
        i = r['info']
        s += (f"\n        exact={r['exact']} gap={r['gap']:.1e} (proved bound {r['upper_bound']:.8f}); screen {i['screen']}, "
              f"{i['rounds']} rounds, graph {i['candidates']} -> {i['graph']} pairs, {i['exact_values']} exact cosines")
    return s

def have_lap():
    try: import lap  # noqa: F401
    except ImportError: return False
    return True

def main_pair(m, d, shared, device, reps=2):
    print(f"# what a stability report of two SAEs of {m} latents in d={d} needs; device {device}; "
          f"{reps} interleaved runs each, the faster of each kept (the machine may be shared)")
    runs = [(run('separate', m, d, shared, device), run('pair', m, d, shared, device)) for _ in range(reps)]
    for s_, p_ in runs: print(f"  separate {s_['time_s']:.1f} s (CPU {s_['cpu_s']:.1f} s), stability_pair {p_['metrics_s']:.1f} s (CPU {p_['metrics_cpu_s']:.1f} s)")
    sep = min((r[0] for r in runs), key=lambda r: r['time_s']); pr = min((r[1] for r in runs), key=lambda r: r['metrics_s'])
    print(f"separate: mmcs + hungarian_mcc + shared_fraction {sep['time_s']:.1f} s, +{sep['extra_mb']:.0f} MB; {sep['metrics']}")
    print(f"pair:     stability_pair {pr['metrics_s']:.1f} s, +{pr['extra_mb']:.0f} MB; {pr['metrics']}; exact={pr['exact']}")
    print(f"          isotropic baselines {pr['baselines']}: cold {pr['baselines_cold_s']:.1f} s, warm {pr['baselines_warm_s'] * 1e3:.0f} ms")
    same = all(abs(sep['metrics'][k] - pr['metrics'][k]) < 1e-6 for k in sep['metrics'])
    print(f"RESULT two {m}-latent SAEs, d {d}: metrics + baselines with a warm cache {pr['total_warm_s']:.1f} s (target <= 30 s); "
          f"separate functions {sep['time_s']:.1f} s ({sep['time_s'] / pr['metrics_s']:.1f}x stability_pair alone); "
          f"cold baseline cost {pr['baselines_cold_s']:.0f} s once per shape; same values: {same}")

def main(sizes, d, shared, device, only):
    print(f"# two SAE-like dictionaries of m latents in d={d}, {shared:.0%} with a partner; device {device}, "
          f"{os.environ.get('BENCH_THREADS', '2')} threads, husai block budget {BUDGET_MB} MiB")
    for m in sizes:
        dense = [] if only == 'husai' else ['scipy'] + (['lap'] if have_lap() else [])
        if only != 'husai' and not have_lap(): print("(lap is not installed: pip install lap)")
        h1 = run('husai', m, d, shared, device); print(show(h1))
        res = {}
        for case in dense:
            res[case] = run(case, m, d, shared, device); print(show(res[case]))
        if not dense:
            print(f"RESULT husai at {m} x {m}, d {d}: {h1['time_s']:.1f} s, +{h1['extra_mb']:.0f} MB RSS "
                  + (f"(CUDA peak {h1['cuda_peak_mb']:.0f} MB) " if 'cuda_peak_mb' in h1 else '')
                  + f"exact={h1['exact']} gap={h1['gap']:.1e}")
            continue
        h2 = run('husai', m, d, shared, device); print(show(h2))
        t_h, mem_h = (h1['time_s'] + h2['time_s']) / 2, max(h1['extra_mb'], h2['extra_mb'])
        for case, r in res.items():
            print(f"RESULT {m} x {m}, d {d}: {case} {r['time_s']:.1f} s / husai {t_h:.1f} s = {r['time_s'] / t_h:.1f}x faster; "
                  f"memory {case} +{r['extra_mb']:.0f} MB / husai +{mem_h:.0f} MB = {r['extra_mb'] / mem_h:.1f}x less; "
                  f"|mean difference| {abs(r['value'] - h1['value']):.1e} ({case} on a float32 matrix)")
        print(f"RESULT husai: exact={h1['exact'] and h2['exact']}, gap {max(h1['gap'], h2['gap']):.1e}, "
              f"extra memory {mem_h:.0f} MB (target <= 1024 MB), time {t_h:.1f} s")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--one', help=argparse.SUPPRESS)
    ap.add_argument('--m', type=int, nargs='+', default=[16384], help='latents per dictionary (several: one after another)')
    ap.add_argument('--d', type=int, default=768, help='input dimension')
    ap.add_argument('--shared', type=float, default=0.6, help='fraction of latents with a partner')
    ap.add_argument('--device', default='cpu', help="where husai computes (and the inputs live): 'cpu' or 'cuda'")
    ap.add_argument('--only', choices=['husai'], help='skip the dense solvers')
    ap.add_argument('--pair', action='store_true', help='time the three metrics and baselines of two SAEs instead')
    ap.add_argument('--budget-mb', type=int, help="husai's block budget in MiB (default: the library's, 256; on a GPU try 8192)")
    a = ap.parse_args()
    BUDGET_MB = a.budget_mb or 256
    if a.one: one(a.one, a.m[0], a.d, a.shared, a.device, BUDGET_MB * 2**20)
    elif a.pair: main_pair(a.m[0], a.d, a.shared, a.device)
    else: main(a.m, a.d, a.shared, a.device, a.only)
