"""Speed and memory of the stability metrics at scale, measured side by side.

    python benchmarks/bench_stability.py            # all cases (several minutes on 2 cores)
    python benchmarks/bench_stability.py --small    # a quick version (smaller sizes)

Every measurement runs in a fresh subprocess (`--one CASE ...`), which resets its peak-RSS counter
(`/proc/self/clear_refs`) after building its inputs and reads `VmHWM` from `/proc/self/status` after
the computation: "peak" is the high-water mark of resident memory during the computation, and
"extra" is that minus the resident memory before it (torch allocations are invisible to
tracemalloc, not to the kernel). The CPU may be shared, so cases that are compared are run
interleaved, several times, and the ratio of medians is printed.
"""
import argparse, json, os, statistics, subprocess, sys, time

def _kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1])
    return -1

def _reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False

def _pair(m, d, shared, seed=0):
    "Two dictionaries [m, d]: a fraction `shared` of B's rows are noisy copies of A's (permuted), the rest random."
    import torch
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, d, generator=g); B = torch.randn(m, d, generator=g)
    n = int(shared * m)
    B[:n] = A[:n] + 0.5 * torch.randn(n, d, generator=g) / 1.0
    return A, B[torch.randperm(m, generator=g)]

def one(case, m, d, budget, k):
    import torch
    from husai.stability import mmcs, match
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
    A, B = _pair(m, d, shared=0.5)
    out = {}
    if case == 'naive_mmcs':
        def fn():                                    # the whole cosine matrix at once
            C = (A / A.norm(dim=1, keepdim=True)) @ (B / B.norm(dim=1, keepdim=True)).T
            C.abs_()
            return 0.5 * (C.amax(1).mean() + C.amax(0).mean()).item()
    elif case == 'mmcs': fn = lambda: mmcs(A, B, budget=budget)
    elif case == 'dense_match': fn = lambda: match(A, B, method='dense').mean
    elif case == 'sparse_match':
        def fn():
            r = match(A, B, method='sparse', k=k, budget=budget)
            out.update(exact=r.exact, upper_bound=r.upper_bound)
            return r.mean
    else: raise SystemExit(f'unknown case {case}')
    rss0 = _kb('VmRSS'); ok = _reset_peak()
    t = time.perf_counter(); v = fn(); dt = time.perf_counter() - t
    hwm = _kb('VmHWM')
    out.update(case=case, m=m, d=d, budget=budget, k=k, value=float(v), time_s=dt, peak_mb=hwm / 1024,
               extra_mb=(hwm - rss0) / 1024, peak_reset=ok)
    print(json.dumps(out))

def run(case, m, d, budget=256 * 2**20, k=32):
    cmd = [sys.executable, __file__, '--one', case, str(m), str(d), str(budget), str(k)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])

def show(r): return (f"{r['case']:13s} m={r['m']:6d} d={r['d']:4d}  time {r['time_s']:7.2f} s  "
                     f"peak RSS {r['peak_mb']:7.0f} MB (+{r['extra_mb']:6.0f} MB during the call)  value {r['value']:.6f}"
                     + (f"  exact={r['exact']} bound={r['upper_bound']:.4f}" if 'exact' in r else ''))

def main(small=False, reps=3):
    m_mmcs, m_h, m_sp, m_agree, d = (4096, 1024, 8192, 1024, 256) if small else (16384, 4096, 32768, 4096, 512)
    budget = 256 * 2**20
    print(f"# mmcs, two {m_mmcs}-latent dictionaries in d={d}: naive full matrix vs blocked (budget {budget >> 20} MB)")
    naive, chunk = [], []
    for _ in range(reps):
        naive.append(run('naive_mmcs', m_mmcs, d)); print(show(naive[-1]))
        chunk.append(run('mmcs', m_mmcs, d, budget)); print(show(chunk[-1]))
    assert abs(naive[0]['value'] - chunk[0]['value']) < 1e-5, 'blocked and naive mmcs disagree'
    tn, tc = statistics.median(r['time_s'] for r in naive), statistics.median(r['time_s'] for r in chunk)
    mn, mc = statistics.median(r['extra_mb'] for r in naive), statistics.median(r['extra_mb'] for r in chunk)
    full_mb = m_mmcs * m_mmcs * 4 / 2**20
    print(f"RESULT mmcs: time blocked/naive = {tc / tn:.2f} (median {tc:.2f} s vs {tn:.2f} s); extra memory "
          f"blocked {mc:.0f} MB (budget {budget >> 20} MB) vs naive {mn:.0f} MB (the full matrix is {full_mb:.0f} MB)")
    small_b = run('mmcs', m_mmcs, d, 32 * 2**20); print(show(small_b))
    print(f"RESULT mmcs with a 32 MB budget: extra memory {small_b['extra_mb']:.0f} MB, time {small_b['time_s']:.2f} s")

    print(f"\n# Hungarian MCC (dense, scipy linear_sum_assignment) at {m_h} latents, d={d}")
    h = run('dense_match', m_h, d); print(show(h))
    print(f"RESULT hungarian_mcc dense at {m_h}: {h['time_s']:.2f} s, extra memory {h['extra_mb']:.0f} MB")

    print(f"\n# certified sparse matching (candidates + dual certificate; see bench_match.py) vs dense at {m_agree} latents")
    dn = run('dense_match', m_agree, d); print(show(dn))
    for k in (32, 128):
        sp = run('sparse_match', m_agree, d, budget, k); print(show(sp))
        print(f"RESULT agreement at {m_agree}, k={k}: sparse {sp['value']:.8f} vs dense {dn['value']:.8f} "
              f"(|diff| {abs(sp['value'] - dn['value']):.2e}); time sparse/dense = {sp['time_s'] / dn['time_s']:.2f}")
    print(f"\n# sparse matching at {m_sp} latents, d={d} (dense would need {m_sp * m_sp * 8 / 2**30:.1f} GiB of float64 cosines)")
    s = run('sparse_match', m_sp, d, budget, 32); print(show(s))
    print(f"RESULT sparse at {m_sp}: {s['time_s']:.1f} s, peak RSS {s['peak_mb']:.0f} MB (+{s['extra_mb']:.0f} MB), "
          f"provably exact: {s['exact']} (gap to bound {s['upper_bound'] - s['value']:.4f})")

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--one':
        one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
        ap.add_argument('--small', action='store_true', help='smaller sizes (a quick run)')
        ap.add_argument('--reps', type=int, default=3, help='interleaved repetitions of the compared cases')
        a = ap.parse_args(); main(a.small, a.reps)
