"""
Benchmarks, printed as one line each in the same format.

    python bench.py                                       # training step of the default CPU model
    python bench.py config/train_shakespeare_char.py      # any training config's model
    python bench.py --bench=sample --out_dir=out          # sampling from a checkpoint: without and with the KV cache
    python bench.py config/train_shakespeare_char.py --bench=sample   # from that config's out_dir

train: ms/iter, tokens/s, MFU (where the device's peak is known) and peak memory, on random tokens.
sample: num_samples x max_new_tokens from a checkpoint (or a random model of the config) three ways:
  uncached, one sample after another  (nanoGPT's sample.py: the whole context through the model per token)
  uncached, the samples batched
  KV cache, the samples batched       (prefill once, then one-token decode steps)
"""
import os
import time
from contextlib import nullcontext
from dataclasses import fields

import torch

from configurator import configure
from model import GPT, GPTConfig, load_checkpoint

# -----------------------------------------------------------------------------
bench = 'train'  # 'train' or 'sample'
# the model (ignored for bench='sample' when out_dir holds a checkpoint)
batch_size = 32
block_size = 64
vocab_size = 65
n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
globals().update({f.name: f.default for f in fields(GPTConfig) if f.name not in globals()})  # every variant flag
# train
learning_rate = 1e-3
warmup_steps = 5  # untimed steps first (compilation, allocator warm-up)
steps = 20
# sample
out_dir = ''  # a checkpoint directory from train.py; '' = a randomly initialised model of the config above
ckpt = 'best'
num_samples = 5
max_new_tokens = 500
temperature = 0.8
top_k = 200
# system
seed = 1337
device = None  # None: cuda, then mps, then cpu
dtype = None  # None: bfloat16 on CUDA where supported, else float32
compile = None  # None: on for CUDA only (bench=sample: compiles the decode step)
# -----------------------------------------------------------------------------
# training configs also set these; the benchmark has no use for them
TRAIN_ONLY = ('eval_interval', 'log_interval', 'eval_iters', 'eval_only', 'init_from', 'data_dir', 'dataset',
              'gradient_accumulation_steps', 'max_iters', 'weight_decay', 'beta1', 'beta2', 'grad_clip', 'decay_lr',
              'warmup_iters', 'lr_decay_iters', 'min_lr', 'backend', 'nan_policy')
config = configure(globals(), file_only_keys=TRAIN_ONLY)
if device is None:
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
device_type = 'cuda' if device.startswith('cuda') else 'mps' if device.startswith('mps') else 'cpu'
if dtype is None:
    dtype = 'bfloat16' if device_type == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
compile = device_type == 'cuda' if compile is None else compile
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=ptdtype)
device_name = torch.cuda.get_device_name(device) if device_type == 'cuda' else device_type
torch.manual_seed(seed)
torch.backends.cuda.matmul.allow_tf32 = True

if bench not in ('train', 'sample'):
    raise SystemExit(f"error: bench must be 'train' or 'sample', got '{bench}'")
if bench == 'sample' and out_dir:
    if not os.path.exists(os.path.join(out_dir, f'{ckpt}.pt')):
        raise SystemExit(f"error: no checkpoint at {os.path.join(out_dir, f'{ckpt}.pt')}; train one first, or pass "
                         f"--out_dir='' to time a randomly initialised model")
    try:
        checkpoint = load_checkpoint(os.path.join(out_dir, f'{ckpt}.pt'))
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    model = GPT.from_checkpoint(checkpoint)
    source = os.path.join(out_dir, f'{ckpt}.pt')
else:
    model = GPT(GPTConfig(**{f.name: config[f.name] for f in fields(GPTConfig)}))
    source = 'random init'
model.to(device)
params = f"{model.get_num_params() / 1e6:.2f}M params"


def sync():
    if device_type == 'cuda':
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


if bench == 'train':
    optimizer = model.configure_optimizers(0.1, learning_rate, (0.9, 0.95), device_type)
    step_model = torch.compile(model) if compile else model
    X = torch.randint(model.config.vocab_size, (batch_size, model.config.block_size), device=device)
    Y = torch.randint(model.config.vocab_size, (batch_size, model.config.block_size), device=device)

    def train_steps(n):
        for _ in range(n):
            with ctx:
                _, loss = step_model(X, Y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss

    train_steps(warmup_steps)
    if device_type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    loss, dt = timed(lambda: train_steps(steps))
    dt /= steps
    tokens = batch_size * model.config.block_size
    mfu = model.estimate_mfu(tokens, dt, device_name)
    mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device_type == 'cuda' else 'n/a'
    print(f"train | {params} | {device_name} {dtype} compile={compile} | {1000 * dt:.1f} ms/iter "
          f"| {tokens / dt:,.0f} tok/s | mfu {'n/a' if mfu is None else f'{100 * mfu:.1f}%'} | peak mem {mem} "
          f"| loss {loss.item():.4f}")

else:
    model.eval()
    decode = torch.compile(model.step, mode='reduce-overhead', fullgraph=True) if compile else None
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    batch = prompt.expand(num_samples, -1)

    def run(kv_cache, batched, n=max_new_tokens):
        gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad(), ctx:
            if batched:
                return model.generate(batch, n, temperature, top_k, kv_cache=kv_cache, generator=gen, decode=decode)
            return [model.generate(prompt, n, temperature, top_k, kv_cache=kv_cache, generator=gen)
                    for _ in range(num_samples)]

    run(True, True, n=model.config.block_size + 8)  # warm-up: kernels, compilation of the decode step
    run(False, True, n=8)
    tokens = num_samples * max_new_tokens
    results = []
    for name, kv_cache, batched in (('uncached, one sample after another', False, False),
                                    ('uncached, batched', False, True),
                                    ('KV cache, batched', True, True)):
        _, dt = timed(lambda: run(kv_cache, batched))
        results.append(dt)
        print(f"sample | {params} | {device_name} {dtype} compile={compile and kv_cache} | {name:<34} "
              f"| {num_samples} x {max_new_tokens} tokens in {dt:.2f} s | {tokens / dt:,.0f} tok/s", flush=True)
    print(f"sample | {source} | KV cache vs uncached one after another: {results[0] / results[2]:.1f}x faster")
