"""Seconds per full-batch training step of the grokking transformer: our last-position fast path
against two naive references measured side by side in the same process (the machine is shared, so
the ratios are what to read; absolute times move with the load).

  naive-full : every position through attention, MLP and unembedding (`forward_full`), loss at the last
  naive-last : keys/values/queries by matmul at every position, attention/MLP/unembedding at the last only
  husai      : `Transformer.forward` (per-token Q/K/V tables gathered, last position only)

Theoretical FLOPs per step count the matmuls (forward x 3 for forward+backward); the fraction is
against the ~150 GFLOP/s fp32 peak of this 2-core machine (GUIDE §7).

    python benchmarks/bench_grok.py [--preset nanda] [--reps 5] [--threads N]
"""
import argparse, math, statistics, time
import torch, torch.nn.functional as F
from husai.grokking import grok_config
from husai.transformer import Transformer

def naive_last(m, x):
    "Every position's Q/K/V by matmul, then attention, MLP and unembedding at the last position only."
    c = m.cfg; n, T = x.shape; H, dh = c.n_heads, c.d_head; b = m.blocks[0]
    r = m.W_E[x] + m.W_pos
    q = (r[:, -1] @ b.W_Q).view(n, H, 1, dh); k = (r @ b.W_K).view(n, T, H, dh).transpose(1, 2)
    v = (r @ b.W_V).view(n, T, H, dh).transpose(1, 2)
    z = ((q @ k.transpose(-1, -2)) / math.sqrt(dh)).softmax(-1) @ v
    r = r[:, -1] + z.reshape(n, H * dh) @ b.W_O
    r = r + F.relu(r @ b.W_in + b.b_in) @ b.W_out + b.b_out
    return r @ m.W_U

def step_flops(cfg, n, mode):
    "Matmul FLOPs of one forward+backward step over `n` examples (3x the forward)."
    d, hd, mlp, o, T, V = cfg.d_model, cfg.n_heads * cfg.d_head, cfg.d_mlp, cfg.n_out, cfg.seq_len, cfg.vocab_size
    tail = 2 * hd * d + 4 * d * mlp + 2 * d * o                       # W_O, MLP, W_U at one position
    if mode == 'naive-full': fwd = n * T * (2 * d * 3 * hd + tail)
    elif mode == 'naive-last': fwd = n * (T * 2 * d * 2 * hd + 2 * d * hd + tail)
    else: fwd = n * tail + 3 * 2 * V * d * hd                           # + the three per-token tables
    return 3 * fwd

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='nanda'); ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--steps', type=int, default=5, help='timed steps per rep and variant')
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    cfg = grok_config(a.preset); ds = cfg.dataset()
    m = Transformer(cfg.model_config(ds), seed=0)
    opt = torch.optim.AdamW(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, foreach=True)
    x, y = ds.inputs[ds.train_idx], ds.targets[ds.train_idx]
    variants = {'naive-full': lambda: m.forward_full(x)[:, -1], 'naive-last': lambda: naive_last(m, x), 'husai': lambda: m(x)}
    with torch.no_grad():
        ref = m.forward_full(x)[:, -1]
        for k, f in variants.items(): assert torch.allclose(f(), ref, atol=1e-4), k
    times = {k: [] for k in variants}
    for rep in range(a.reps):                 # interleaved, so that load changes hit every variant alike
        for k, f in variants.items():
            for _ in range(a.steps + (rep == 0)):
                t = time.perf_counter()
                loss = F.cross_entropy(f().double(), y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
                times[k].append(time.perf_counter() - t)
    print(f"preset {a.preset}: {cfg.task} p={cfg.p}, {len(x)} training examples (full batch), "
          f"d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, {torch.get_num_threads()} threads")
    print(f"{'variant':<11} {'min ms':>8} {'median ms':>10} {'GFLOP/step':>11} {'GFLOP/s':>8} {'of 150':>7} {'speed-up (median)':>18}")
    base = statistics.median(times['naive-full'])
    for k, ts in times.items():
        fl = step_flops(m.cfg, len(x), k) / 1e9
        med = statistics.median(ts)
        print(f"{k:<11} {min(ts)*1e3:8.1f} {med*1e3:10.1f} {fl:11.2f} {fl/min(ts):8.1f} {fl/min(ts)/150:7.0%} {base/med:17.2f}x")
    print(f"husai vs naive-last: {statistics.median(times['naive-last'])/statistics.median(times['husai']):.2f}x (median), "
          f"{min(times['naive-last'])/min(times['husai']):.2f}x (min)")

if __name__ == '__main__': main()
