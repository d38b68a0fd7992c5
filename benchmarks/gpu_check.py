"""One short GPU check of husai (run on a lent GPU machine; CI never runs it).

Checks that the library's compute functions give the CPU's answers on CUDA tensors, and measures
what a GPU buys: the `nanda` grokking preset, Song et al.'s synthetic validation at its full
published scale (30k full-batch steps, 5 seeds), batched vs looped multi-seed SAE training, and
blocked mmcs at 16k latents. Writes one JSON file (argument 1, default gpu_check.json) and prints it.
Needs only torch, numpy, scipy, safetensors and tqdm (no nbdev or Jupyter): `PYTHONPATH=. python benchmarks/gpu_check.py OUT.json`.
"""
import json, os, sys, time, tempfile
import numpy as np, torch
from husai.grokking import grok_config, train_grokking, load_run
from husai.sae import SAEConfig
from husai.train_sae import TrainConfig, train_saes
from husai.synthetic import SyntheticConfig, make_synthetic, ground_truth_mcc
from husai.stability import mmcs, hungarian_mcc, shared_fraction, pairwise
from husai.baselines import random_saes
from husai.stats import seed_bootstrap

DRY = bool(os.environ.get('GPU_CHECK_DRY'))   # a rehearsal on the CPU with tiny sizes, to check the script itself
dev = 'cpu' if DRY else 'cuda'
n = (lambda full, dry: dry if DRY else full)
out = {'torch': torch.__version__, 'device': 'cpu (dry run)' if DRY else torch.cuda.get_device_name(0)}
def sync():
    if not DRY: torch.cuda.synchronize()
OUT_FILE = sys.argv[1] if len(sys.argv) > 1 else 'gpu_check.json'
def say(k, v):
    "Record and print one result; the file is rewritten after each, so a run cut short keeps what it measured."
    out[k] = v; print(k, json.dumps(v, default=str), flush=True)
    json.dump(out, open(OUT_FILE, 'w'), indent=2, default=str)

PARTS = set(sys.argv[2:])   # optional: run only these parts, e.g. `relu_free_norm`
def part(name): return not PARTS or name in PARTS

# 1. metrics: CUDA tensors give the CPU answer
if part('metrics'):
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(512, 64, generator=g), torch.randn(512, 64, generator=g)
    EA, EB = torch.randn(64, 512, generator=g), torch.randn(64, 512, generator=g)
    say('metrics_cpu_vs_cuda', {
        'mmcs': [mmcs(A, B), mmcs(A.to(dev), B.to(dev))],
        'hungarian_mcc': [hungarian_mcc(A, B), hungarian_mcc(A.to(dev), B.to(dev))],
        'shared_fraction_0.2': [shared_fraction({'W_dec': A, 'W_enc': EA}, {'W_dec': B, 'W_enc': EB}, 0.2),
                                shared_fraction({'W_dec': A.to(dev), 'W_enc': EA.to(dev)}, {'W_dec': B.to(dev), 'W_enc': EB.to(dev)}, 0.2)]})

# 2. SAE training: CUDA vs CPU on the same seeds and data
if part('train_cpu_cuda'):
    X = torch.randn(4096, 32, generator=g) @ torch.randn(32, 32, generator=g)
    cfg = SAEConfig('topk', d_in=32, d_sae=128, k=8)
    tc = TrainConfig(steps=100, batch_size=256)
    rc = train_saes(X, cfg, [0, 1], tc, progress=False)
    rg = train_saes(X, cfg, [0, 1], tc, device=dev, progress=False)
    say('train_saes_cpu_vs_cuda', {'fvu_eval_cpu': [m['fvu_eval'] for m in rc.metrics.values()],
                                   'fvu_eval_cuda': [m['fvu_eval'] for m in rg.metrics.values()],
                                   'max_abs_dW_dec': float((rc.saes.W_dec.detach() - rg.saes.W_dec.detach().cpu()).abs().max())})

# 3. grokking with the nanda preset (p=113, Nanda et al.'s config) on the GPU
if part('grok'):
    with tempfile.TemporaryDirectory() as d:
        t = time.time(); run = train_grokking(grok_config('nanda', steps=n(25_000, 20), log_every=n(100, 10), checkpoint_every=n(1000, 10)), out=d, device=dev, progress=False); sync()
        _, gcfg, m = load_run(run, device=dev)
        say('grok_nanda_cuda', {k: m.get(k) for k in ('steps', 'train_acc', 'test_acc', 'grok_step', 'memorise_step',
                                                         'key_frequencies', 'fourier_gini', 'sec_per_step', 'seconds_to_grok')}
            | {'wall_s': time.time() - t})

# 4. Song et al.'s synthetic experiment at full scale (the finding notebook's 'full' settings)
if part('song'):
    data = make_synthetic(SyntheticConfig(d=16, n_features=32, k=3, n_samples=n(50_000, 2_000), seed=42))
    song = {}
    full_tc = TrainConfig(lr=1e-4, batch_size=None, steps=n(30_000, 20), lr_decay='none', lr_warmup_steps=0, l1_warmup_steps=0, eval_frac=0.1)
    for arch, scfg in {'topk': SAEConfig(arch='topk', d_in=16, d_sae=32, k=3, aux_k=0, b_dec_init='zeros'),
                       'relu': SAEConfig(arch='relu', d_in=16, d_sae=32, l1_coef=1e-2, b_dec_init='zeros')}.items():
        t = time.time(); res = train_saes(data.X, scfg, [0, 1, 2, 3, 4], full_tc, device=dev, progress=False); sync()
        pw = pairwise(res.saes, 'hungarian_mcc'); boot = seed_bootstrap(pw.matrix, seed=0)
        gt = ground_truth_mcc(res.saes, data.dictionary.to(dev))
        song[arch] = {'pw_mcc': boot['mean'], 'pw_mcc_ci': [boot['ci_low'], boot['ci_high']], 'gt_mcc': np.asarray(gt).tolist(),
                      'fvu_eval': [m['fvu_eval'] for m in res.metrics.values()], 'l0': [m['l0'] for m in res.metrics.values()],
                      'wall_s': time.time() - t}
    song['random_floor_hungarian_mcc'] = float(pairwise(random_saes('isotropic', 16, 32, seeds=range(1000, 1020)), 'hungarian_mcc').values.mean())
    song['theirs'] = {'topk_pw_mcc': 0.95, 'topk_gt_mcc': [0.95, 0.99], 'relu_pw_mcc': 0.61, 'random_hungarian_mcc': 0.46}
    say('song_full_scale_cuda', song)

# 5. batched vs a loop of single-seed SAE trainings (12,769 x 128, TopK 1024/k=32, 8 seeds, 300 steps)
if part('batched'):
    Xs = torch.randn(12_769, 128, generator=g) * torch.linspace(3, 0.05, 128)
    cfg = SAEConfig('topk', d_in=128, d_sae=1024, k=32)
    tc = TrainConfig(steps=n(300, 5), batch_size=256)
    train_saes(Xs, cfg, [0], TrainConfig(steps=20), device=dev, progress=False); sync()   # warm-up
    t = time.time(); train_saes(Xs, cfg, list(range(8)), tc, device=dev, progress=False); sync(); tb = time.time() - t
    t = time.time()
    for s in range(8): train_saes(Xs, cfg, [s], tc, device=dev, progress=False)
    sync(); tl = time.time() - t
    say('batched_vs_loop_cuda', {'batched_s': tb, 'loop_s': tl, 'ratio': tl / tb, 'samples_per_s_batched': 8 * tc.steps * 256 / tb})

# 6. blocked mmcs at 16,384 latents in d=512
if part('mmcs'):
    D1, D2 = torch.randn(n(16_384, 1024), 512, device=dev), torch.randn(n(16_384, 1024), 512, device=dev)
    mmcs(D1[:512], D2[:512]); sync()
    t = time.time(); v = mmcs(D1, D2); sync()
    say('mmcs_16k_cuda', {'value': v, 'seconds': time.time() - t})


# 7. Song et al.'s ReLU SAE lets decoder norms float (their models.py AutoEncoder never renormalises);
#    ours keeps unit-norm rows. The same full-scale run with that constraint switched off:
if part('relu_free_norm'):
    data = make_synthetic(SyntheticConfig(d=16, n_features=32, k=3, n_samples=n(50_000, 2_000), seed=42))
    scfg = SAEConfig(arch='relu', d_in=16, d_sae=32, l1_coef=1e-2, b_dec_init='zeros', normalize_decoder=False, remove_parallel_grad=False)
    tc = TrainConfig(lr=1e-4, batch_size=None, steps=n(30_000, 20), lr_decay='none', lr_warmup_steps=0, l1_warmup_steps=0, eval_frac=0.1)
    t = time.time(); res = train_saes(data.X, scfg, [0, 1, 2, 3, 4], tc, device=dev, progress=False); sync()
    pw = pairwise(res.saes, 'hungarian_mcc'); boot = seed_bootstrap(pw.matrix, seed=0)
    say('song_relu_free_decoder_norm_cuda', {'pw_mcc': boot['mean'], 'pw_mcc_ci': [boot['ci_low'], boot['ci_high']],
        'gt_mcc': np.asarray(ground_truth_mcc(res.saes, data.dictionary.to(dev))).tolist(),
        'fvu_eval': [m['fvu_eval'] for m in res.metrics.values()], 'l0': [m['l0'] for m in res.metrics.values()],
        'decoder_norms_mean': float(res.saes.W_dec.detach().norm(dim=-1).mean()), 'wall_s': time.time() - t})
