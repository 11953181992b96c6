"""
Benchmarks, printed as one line each in the same format.

    python bench.py                                       # training step of the default CPU model
    python bench.py config/train_shakespeare_char.py      # any training config's model, exactly as train.py builds it
    python bench.py config/train_shakespeare_char.py --profile=True         # + a profiler trace and the top kernels
    python bench.py config/train_shakespeare_char.py --compare="--attn_impl=manual"   # A vs B, in one process
    python bench.py config/train_shakespeare_char.py --compare="config/ladder/20_llama.py --compile=False"
    python bench.py --bench=sample --out_dir=out          # sampling from a checkpoint: without and with the KV cache
    python bench.py config/train_shakespeare_char.py --bench=sample   # from that config's out_dir
    python bench.py config/train_shakespeare_char.py --bench=int8     # int8 against float: size, val loss, tokens/s
    python bench.py --bench=newton_schulz                 # Muon's Newton-Schulz, each variant, two forms: ms, error

train: ms/iter, tokens/s, MFU (where the device's peak is known) and peak memory, on random tokens. The model is
the one train.py builds from the same config: its vocabulary comes from the dataset's meta.json when the dataset is
prepared, else from what the dataset's prepare.py makes by default (65 characters for shakespeare_char, GPT-2's
50,257 BPE tokens for shakespeare and tinystories).
memory: the bytes of the parameters, gradients and optimizer state (tied weights counted once), of the activations
(the tensors autograd saves for backward in one eager forward pass of the batch, parameters left out) and the
device's peak over the timed steps (CUDA only).
--profile=True: after the timed steps, 1 + 2 more steps (skipped, warm-up) then 3 recorded by torch.profiler: a
Chrome trace (profile_dir/trace.json: chrome://tracing or ui.perfetto.dev), the top kernels by self time per step
(GPU kernels on CUDA, ops' self CPU time on the CPU), and where the time went, by category (CATEGORIES).
--compare="<args>": config files and --key=value overrides applied on top of this run's settings make setup B;
both are built in this process and timed in turn (A, B, A, B, ... compare_rounds times, the median of each kept, so
that drift hits both); prints B's tokens/s over A's.
sample: num_samples x max_new_tokens from a checkpoint (or a random model of the config) three ways:
  uncached, one sample after another  (nanoGPT's sample.py: the whole context through the model per token)
  uncached, the samples batched
  KV cache, the samples batched       (prefill once, then one-token decode steps)
and two gains, each measured in this run: batching (the first vs the second) and the KV cache (the second vs the third).
int8: the same model in float and with weight-only int8 linear layers (model.quantize_int8), from the checkpoint as
bench='sample' takes it (or pretrained weights: init_from): the bytes of each state dict saved with torch.save, the
loss over eval_iters batches of the dataset's val split (the same batches for both), and tokens/s sampling
num_samples x max_new_tokens with the KV cache (compiled decode on CUDA), each timed int8_rounds times in turn.
newton_schulz: the matrices Muon takes in this config's model, batched by shape as Muon batches them, with a power-law
spectrum (singular values 1/i, as gradients have), through newton_schulz with each variant of optim.NEWTON_SCHULZ,
in two forms: plain (every step on X) and as Muon runs it (the Gram form for the wide shapes): the median ms of steps
calls per shape, the error against U V^T (float64) and where the singular values land.
"""
import copy
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import fields

import numpy as np
import torch
from torch.autograd import DeviceType
from tqdm import tqdm

import hf
from common import compile_model, compile_on, device_setup, find_checkpoint, load_checkpoint, or_exit, peak_flops
from configurator import ConfigError, configure, parse_config, read_settings
from data.common import dataset_vocab_size, prepared_meta
from fp8 import use_float8_head
from model import GPT, GPTConfig, model_config, quantize_int8
from optim import NEWTON_SCHULZ, OPTIMIZERS, by_shape, configure_muon, key_error, newton_schulz, ns_form

# -----------------------------------------------------------------------------
bench = 'train'  # 'train', 'sample', 'int8' or 'newton_schulz'
# the model, its batch and the system: train.py's keys with train.py's defaults (configurator.read_settings), so that
# the model is the one train.py builds (bench='sample' / 'int8': unless init_from or out_dir gives one); vocab_size
# None: the dataset's (see above). Every GPTConfig field is one of them.
TRAIN = read_settings(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py'))
globals().update({k: TRAIN[k] for k in ('data_dir', 'dataset', 'batch_size', 'block_size', 'optim', 'muon_ns', 'seed',
                                        'device', 'dtype', 'compile', 'compile_mode', 'fp8_head', 'device_peak_flops',
                                        *(f.name for f in fields(GPTConfig)))})
# train
learning_rate = 1e-3  # the optimizer's (timing does not depend on it)
warmup_steps = 5  # untimed steps first (compilation, allocator warm-up)
steps = 20  # timed steps
profile = False  # then a few more steps under torch.profiler: a trace, the top kernels, time by category
profile_dir = 'bench_profile'  # where --profile writes trace.json
compare = ''  # config files and --key=value overrides (one string) that make a second setup B to time against this one
compare_rounds = 3  # --compare: A, B, A, B, ... this many times each; the median ms/iter of each is kept
# sample and int8
out_dir = ''  # a checkpoint directory from train.py; '' = a randomly initialised model of the config above
ckpt = 'best'  # 'best', 'last', or a path to a .pt file
init_from = 'scratch'  # a GPT-2 name or a Hugging Face folder: those weights instead (as train.py; 'resume': out_dir's)
num_samples = 5  # samples generated at once
max_new_tokens = 500  # tokens per sample
temperature = 0.8  # as sample.py
top_k = 200  # as sample.py
# int8
eval_iters = 20  # val batches of batch_size x block_size for the loss of each
int8_rounds = 3  # sampling timed float, int8, float, int8, ...: the median of each
# -----------------------------------------------------------------------------
# training configs also set train.py's other keys (max_iters, ...): the benchmark reads them from files and skips them
config = configure(globals(), file_only_keys=tuple(TRAIN))
try:
    config_b = parse_config(config, shlex.split(compare), tuple(TRAIN)) if compare else None
except ConfigError as e:
    sys.exit(f"error: --compare: {e}")
if bench not in ('train', 'sample', 'int8', 'newton_schulz'):
    sys.exit(f"error: bench must be 'train', 'sample', 'int8' or 'newton_schulz', got '{bench}'")
if compare and (bench != 'train' or config_b['bench'] != 'train' or compare_rounds < 1):
    sys.exit("error: --compare times training steps: bench='train' for both, compare_rounds >= 1")
for s in filter(None, (config, config_b)):
    if error := key_error(s['optim'], s['muon_ns']):
        sys.exit(f"error: {error}")
    if s['steps'] < 1 or s['warmup_steps'] < 0:
        sys.exit(f"error: steps must be >= 1 and warmup_steps >= 0, got steps={s['steps']}, "
                 f"warmup_steps={s['warmup_steps']}")

# where the time went: the first category whose pattern a kernel's name matches (on the CPU, an op's), else that of
# the op it ran in (CPU: the enclosing ops; CUDA: the op that launched it); 'other' when none matches
CATEGORIES = {
    'attention': r'flash|fmha|cudnn|sdpa|attention',
    'matmul': r'gemm|cutlass|cublas|nvjet|xmma|sm\d\d_|^aten::(mm|addmm|bmm|baddbmm|matmul|linear|_scaled_mm)$',
    'compiled': r'triton_|cpp_fused',
    'optimizer': r'adam|multi_tensor|foreach',
    'loss': r'cross_entropy|log_?softmax|nll',
    'copies': r'memcpy|memset|copy_',
    'communication': r'nccl',
}


def build(s):
    """The model train.py builds from settings s (bench='sample' or 'int8': s's pretrained weights, else s's checkpoint
    when s has an out_dir), on s's device: (model, device_setup's System, where the model came from)."""
    system = or_exit(device_setup, s['device'], s['dtype'])
    torch.manual_seed(s['seed'])
    if s['bench'] != 'train' and s['init_from'] not in ('scratch', 'resume'):
        model, source = GPT.from_checkpoint(or_exit(hf.load, s['init_from'])), s['init_from']
    elif s['bench'] != 'train' and s['out_dir']:
        source = or_exit(find_checkpoint, s['out_dir'], s['ckpt'])
        model = GPT.from_checkpoint(or_exit(load_checkpoint, source))
    else:
        dataset_vocab, source = dataset_vocab_size(os.path.join(s['data_dir'], s['dataset']))
        if dataset_vocab is None and s['vocab_size'] is None:
            sys.exit(f"error: no vocabulary size for dataset '{s['dataset']}': prepare it "
                     f"(python data/{s['dataset']}/prepare.py) or pass --vocab_size=N")
        args = or_exit(model_config, s, dataset_vocab or s['vocab_size'], f"dataset '{s['dataset']}'")
        model = GPT(GPTConfig(**args))
        if s['fp8_head']:
            or_exit(use_float8_head, model, system.device)
        source = f"random init, vocabulary from {source}" if s['vocab_size'] is None else "random init"
    print(f"model: {model.config} ({source})")
    return model.to(system.device), system, source


def timed(fn, device_type):
    if device_type == 'cuda':
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device_type == 'cuda':
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def nbytes(tensors):
    """Bytes of the distinct storages behind tensors: a storage shared by several (tied weights, views) counts once."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def state_tensors(optimizer):
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


def train_setup(s):
    """Settings s ready to time: model, optimizer and batch, warmed up (a dict of what timing and reports use)."""
    model, system, _ = build(s)
    compiled = or_exit(compile_on, s['compile'], system.device_type)
    optimizer = OPTIMIZERS[s['optim']](model, 0.1, s['learning_rate'], (0.9, 0.95), system.device_type,
                                       compile=compiled, ns=s['muon_ns'])
    step_model = compile_model(model, s['compile_mode']) if compiled else model
    X, Y = (torch.randint(model.config.vocab_size, (s['batch_size'], model.config.block_size), device=system.device)
            for _ in range(2))

    def train_steps(n):
        loss = None
        for _ in range(n):
            with system.ctx:
                _, loss = step_model(X, Y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss

    print(f"warm-up: {s['warmup_steps']} untimed steps{' (the first compiles: a minute or more)' if compiled else ''}",
          flush=True)
    train_steps(s['warmup_steps'])
    return dict(s=s, model=model, optimizer=optimizer, X=X, Y=Y, system=system, compiled=compiled,
                train_steps=train_steps, runs=[])


def held(t):
    """Device bytes setup t holds between steps (parameters, optimizer state, batch): under --compare the other setup's
    are taken off the peak of this one's steps."""
    return nbytes([x for x in [*t['model'].parameters(), *state_tensors(t['optimizer']), t['X'], t['Y']] if x.is_cuda])


def time_steps(t, others):
    """Time t's steps once: (seconds per step, last loss, peak device bytes of the steps less what `others` hold)."""
    cuda = t['system'].device_type == 'cuda'
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    loss, dt = timed(lambda: t['train_steps'](t['s']['steps']), t['system'].device_type)
    peak = torch.cuda.max_memory_allocated() - sum(map(held, others)) if cuda else None
    return dt / t['s']['steps'], loss.item(), peak


def memory(t):
    """Bytes of t's parameters, gradients, optimizer state and activations: what autograd saves for backward in one
    eager forward pass of the batch, parameters left out (autocast's low-precision copies of weights count)."""
    model, params = t['model'], list(t['model'].parameters())
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    saved = []

    def pack(x):
        if x.untyped_storage().data_ptr() not in param_storages:
            saved.append(x)
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), t['system'].ctx:
        _, loss = model(t['X'], t['Y'])
    activations = nbytes(saved)
    saved.clear()
    loss.backward()
    grads = nbytes(p.grad for p in params if p.grad is not None)
    t['optimizer'].zero_grad(set_to_none=True)
    return nbytes(params), grads, nbytes(state_tensors(t['optimizer'])), activations


def report(t):
    """Print t's train and memory lines (the median of its timings); return (ms/iter, tokens/s)."""
    s, model, system = t['s'], t['model'], t['system']
    dt = statistics.median(r[0] for r in t['runs'])
    tokens = s['batch_size'] * model.config.block_size
    mfu = model.estimate_mfu(tokens / dt, s['device_peak_flops'] or peak_flops(system.name, system.dtype))
    peak = None if t['runs'][0][2] is None else max(r[2] for r in t['runs'])
    print(f"train | {model.get_num_params(non_embedding=False):,} params | {model.flops_per_token():,} FLOPs/token "
          f"| {system.name} {system.dtype} compile={t['compiled']} | {1000 * dt:.2f} ms/iter "
          f"| {tokens / dt:,.0f} tok/s | mfu {'n/a' if mfu is None else f'{100 * mfu:.2f}%'} "
          f"| peak mem {'n/a' if peak is None else f'{peak / 2**30:.2f} GiB'} | loss {t['runs'][-1][1]:.4f}")
    mib = [f"{b / 2**20:,.2f} MiB" for b in memory(t)]
    print(f"memory | params {mib[0]} | grads {mib[1]} | optimizer {mib[2]} | activations {mib[3]} (saved for backward, "
          f"one micro-batch, eager) | peak {'n/a' if peak is None else f'{peak / 2**20:,.2f} MiB'}", flush=True)
    return 1000 * dt, tokens / dt


def category(names):
    """The first of CATEGORIES that one of names matches, in order (a kernel's own name first), else 'other'."""
    return next((c for name in names for c, pattern in CATEGORIES.items() if re.search(pattern, name, re.I)), 'other')


def enclosing(op):
    """The names of op and of the ops around it, innermost first."""
    names = []
    while op is not None:
        names, op = names + [op.name], op.cpu_parent
    return names


def profile_steps(t, ms_per_iter, wait=1, warmup=2, active=3):
    """Run wait + warmup + active more steps of t under torch.profiler; write the Chrome trace and print the top
    kernels (GPU kernels on CUDA, ops' self CPU time elsewhere) and the time by category, per recorded step."""
    cuda = t['system'].device_type == 'cuda'
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
    with torch.profiler.profile(activities=activities, schedule=schedule, acc_events=True) as prof:  # one cycle
        for _ in range(wait + warmup + active):
            t['train_steps'](1)
            prof.step()
    os.makedirs(profile_dir, exist_ok=True)
    path = os.path.join(profile_dir, 'trace.json')
    prof.export_chrome_trace(path)
    events = prof.events()
    per_name, per_category = {}, dict.fromkeys([*CATEGORIES, 'other'], 0.0)  # microseconds over the active steps
    for e in events:
        if e.device_type != (DeviceType.CUDA if cuda else DeviceType.CPU) or cuda and e.is_user_annotation:
            continue  # on the GPU, record_function's ranges (ProfilerStep*, Optimizer.step) span kernels counted too
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        name = re.sub(r'^void |at::native::|\(anonymous namespace\)::', '', e.name)  # a kernel's informative part
        name = '(outside any op: python)' if name.startswith('ProfilerStep') else name
        name_us, calls = per_name.get(name, (0.0, 0))
        per_name[name] = name_us + us, calls + 1
        per_category[category([e.name] if cuda else [e.name, *enclosing(e.cpu_parent)])] += us
    if cuda:  # a kernel whose name says nothing goes to the category of the op that launched it, or of those around it
        for op in (e for e in events if e.device_type == DeviceType.CPU):
            for k in op.kernels:
                if category([k.name]) == 'other':
                    per_category['other'] -= k.duration
                    per_category[category(enclosing(op))] += k.duration
    total = sum(per_category.values())
    what = 'kernel time on the GPU' if cuda else 'CPU time'
    print(f"profile | {active} steps recorded (after {wait} skipped, {warmup} warm-up) | {what} "
          f"{total / active / 1000:.3f} ms/step (timed: {ms_per_iter:.2f} ms/iter) | trace {path}")
    print(f"profile | top {'kernels' if cuda else 'ops'} by self {'GPU' if cuda else 'CPU'} time, per step")
    for name, (us, calls) in sorted(per_name.items(), key=lambda kv: -kv[1][0])[:15]:
        print(f"profile | {name[:60]:<60} | {us / active / 1000:8.3f} ms/step | {100 * us / total:5.1f}% "
              f"| {calls / active:.1f} calls/step")
    print("profile | where the time went, per step")
    for cat, us in per_category.items():
        if us > 0.5:  # microseconds, over the recorded steps
            print(f"profile | {cat:<13} | {us / active / 1000:8.3f} ms/step | {100 * us / total:5.1f}%")


if bench == 'train':
    setups = [train_setup(s) for s in (config, config_b) if s]
    rounds = compare_rounds if compare else 1
    print(f"timing: {rounds} x {len(setups)} x {steps} steps", flush=True)
    for _ in range(rounds):  # in turn, so that drift (clocks, other jobs) hits both alike
        for t in setups:
            t['runs'].append(time_steps(t, [u for u in setups if u is not t]))
    results = [report(t) for t in setups]  # (ms/iter, tokens/s) each
    if compare:
        (ms_a, tok_s_a), (ms_b, tok_s_b) = results
        print(f"compare | B vs A | {tok_s_b / tok_s_a:.3f}x tokens/s | {ms_a:.2f} -> {ms_b:.2f} ms/iter | B: {compare}")
    if profile:
        profile_steps(setups[0], results[0][0])

elif bench == 'newton_schulz':
    model, system, _ = build(config)
    muon = configure_muon(model, 0.0, 0.0, (0.9, 0.95), system.device_type)
    shapes = {shape: len(ps) for shape, ps in by_shape(p for g in muon.param_groups if g['use_muon']
                                                       for p in g['params']).items()}  # (short, long) -> how many
    gen = torch.Generator().manual_seed(seed)
    inputs = []  # (G, U V^T) per shape
    for (r, c), n in shapes.items():
        U = torch.linalg.qr(torch.randn(n, r, r, generator=gen, dtype=torch.float64))[0]
        V = torch.linalg.qr(torch.randn(n, c, r, generator=gen, dtype=torch.float64))[0]
        S = torch.arange(1, r + 1, dtype=torch.float64) ** -1.0
        inputs.append((((U * S) @ V.mT).float().to(system.device), U @ V.mT))
    where = ' + '.join(f"{n} x {r} x {c}" for (r, c), n in shapes.items())
    for name, ns in NEWTON_SCHULZ.items():
        for form, gram in (('plain', False), ('as run', None)):  # as run: newton_schulz's own choice per shape
            ms, errors, low, high, dtypes = [], [], [], [], []
            for G, polar in inputs:
                for _ in range(warmup_steps):
                    newton_schulz(G, ns, gram)
                ms.append(1000 * statistics.median(timed(lambda: newton_schulz(G, ns, gram), system.device_type)[1]
                                                   for _ in range(steps)))
                O = newton_schulz(G, ns, gram).double().cpu()
                errors.append((torch.linalg.norm(O - polar) / torch.linalg.norm(polar)).item())
                s = torch.linalg.svdvals(O)[:, :int(0.9 * O.size(-2))]  # the top 90% (the smallest are noise's)
                low.append(s.min().item())
                high.append(s.max().item())
                uses_gram, dtype = ns_form(*G.shape[-2:], system.device_type, gram)
                dtypes.append(f"{'gram' if uses_gram else 'plain'} {str(dtype).removeprefix('torch.')}")
            print(f"newton_schulz | {name:<13} | {form:<6} | {system.name} | {where} ({', '.join(dtypes)}) "
                  f"| {sum(ms):.3f} ms ({' + '.join(f'{m:.3f}' for m in ms)}) | error vs U V^T {max(errors):.3f} "
                  f"| singular values {min(low):.2f}-{max(high):.2f} (top 90%)", flush=True)

elif bench == 'sample':
    model, (device, device_type, dtype, ctx, device_name), source = build(config)
    compile = or_exit(compile_on, config['compile'], device_type)
    params = f"{model.get_num_params(non_embedding=False):,} params"
    model.eval()
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    batch = prompt.expand(num_samples, -1)

    def run(kv_cache, batched, n=max_new_tokens):
        gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad(), ctx:
            if batched:
                return model.generate(batch, n, temperature, top_k, kv_cache=kv_cache, generator=gen, compile=compile,
                                      cache_dtype=getattr(torch, dtype))
            return [model.generate(prompt, n, temperature, top_k, kv_cache=kv_cache, generator=gen,
                                   cache_dtype=getattr(torch, dtype))
                    for _ in range(num_samples)]

    run(True, True, n=model.config.block_size + 8)  # warm-up: kernels, compilation of the decode step
    run(False, True, n=8)
    tokens = num_samples * max_new_tokens
    seconds = []
    for name, kv_cache, batched in (('uncached, one sample after another', False, False),
                                    ('uncached, batched', False, True),
                                    ('KV cache, batched', True, True)):
        _, dt = timed(lambda: run(kv_cache, batched), device_type)
        seconds.append(dt)
        print(f"sample | {params} | {device_name} {dtype} compile={compile and kv_cache} | {name:<34} "
              f"| {num_samples} x {max_new_tokens} tokens in {dt:.4f} s | {tokens / dt:,.0f} tok/s", flush=True)
    print(f"sample | {source} | batching {seconds[0] / seconds[1]:.2f}x (uncached: one after another -> batched) "
          f"| KV cache {seconds[1] / seconds[2]:.2f}x (batched: uncached -> cached)")

else:  # int8 against float: size, val loss, sampling speed
    model, (device, device_type, dtype, ctx, device_name), source = build(config)
    compile = or_exit(compile_on, config['compile'], device_type)
    data_path = os.path.join(data_dir, dataset)
    meta = or_exit(prepared_meta, data_path, dataset)  # the val loss is taken on the dataset's val split
    if meta['vocab_size'] > model.config.vocab_size:
        sys.exit(f"error: dataset '{dataset}' has {meta['vocab_size']:,} tokens, more than the model's "
                 f"{model.config.vocab_size:,}: pass the --dataset it was trained on")
    models = {'float': model.eval(), 'int8': quantize_int8(copy.deepcopy(model))}

    def saved_mb(state):
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, os.path.join(tmp, 'model.pt'))
            return os.path.getsize(os.path.join(tmp, 'model.pt')) / 1e6

    mb = {name: saved_mb(m.state_dict()) for name, m in models.items()}
    print(f"int8 | {source} | {device_name} {dtype} | state dict (torch.save): float {mb['float']:,.1f} MB -> int8 "
          f"{mb['int8']:,.1f} MB ({mb['float'] / mb['int8']:.2f}x smaller)", flush=True)

    T = model.config.block_size
    val = np.memmap(os.path.join(data_path, 'val.bin'), dtype=meta['dtype'], mode='r')
    ix = torch.randint(len(val) - T, (eval_iters, batch_size), generator=torch.Generator().manual_seed(seed))
    nats = dict.fromkeys(models, 0.0)
    for rows in tqdm(ix, desc='val loss', leave=False, disable=not sys.stderr.isatty()):
        xy = torch.stack([torch.from_numpy(val[i:i + T + 1].astype(np.int64)) for i in rows.tolist()]).to(device)
        for name, m in models.items():
            with torch.no_grad(), ctx:
                nats[name] += m(xy[:, :-1], xy[:, 1:].contiguous())[1].item() / eval_iters
    print(f"int8 | val loss over {eval_iters} batches of {batch_size} x {T} tokens: float {nats['float']:.4f} -> int8 "
          f"{nats['int8']:.4f} ({nats['int8'] - nats['float']:+.4f} nats)", flush=True)

    prompt = torch.zeros((num_samples, 1), dtype=torch.long, device=device)
    def sample(name, n=max_new_tokens):
        gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad(), ctx:
            return models[name].generate(prompt, n, temperature, top_k, kv_cache=True, generator=gen,
                                         compile=compile, cache_dtype=getattr(torch, dtype))

    for name in models:
        sample(name, n=T + 8)  # warm-up: kernels, compilation, the context-full path
    seconds = {name: [] for name in models}
    for _ in range(int8_rounds):  # in turn, so that drift reaches both
        for name in models:
            seconds[name].append(timed(lambda: sample(name), device_type)[1])
    rate = {name: num_samples * max_new_tokens / statistics.median(s) for name, s in seconds.items()}
    print(f"int8 | sample {num_samples} x {max_new_tokens} tokens, KV cache, compile={compile}: float "
          f"{rate['float']:,.0f} tok/s -> int8 {rate['int8']:,.0f} tok/s ({rate['int8'] / rate['float']:.2f}x)")
