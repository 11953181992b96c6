"""
Benchmarks, printed as one line each in the same format.

    python bench.py                                       # training step of the default CPU model
    python bench.py config/train_shakespeare_char.py      # any training config's model, exactly as train.py builds it
    python bench.py --bench=sample --out_dir=out          # sampling from a checkpoint: without and with the KV cache
    python bench.py config/train_shakespeare_char.py --bench=sample   # from that config's out_dir

train: ms/iter, tokens/s, MFU (where the device's peak is known) and peak memory, on random tokens. The model is
the one train.py builds from the same config: its vocabulary comes from the dataset's meta.json when the dataset is
prepared, else from what the dataset's prepare.py makes by default (65 characters for shakespeare_char, GPT-2's
50,257 BPE tokens for shakespeare and tinystories).
sample: num_samples x max_new_tokens from a checkpoint (or a random model of the config) three ways:
  uncached, one sample after another  (nanoGPT's sample.py: the whole context through the model per token)
  uncached, the samples batched
  KV cache, the samples batched       (prefill once, then one-token decode steps)
and two gains, each measured in this run: batching (the first vs the second) and the KV cache (the second vs the third).
"""
import os
import sys
import time
from dataclasses import fields

import torch

from configurator import configure
from data.common import dataset_vocab_size
from model import GPT, GPTConfig, device_setup, load_checkpoint, model_config, peak_flops

# -----------------------------------------------------------------------------
bench = 'train'  # 'train' or 'sample'
# the model: the same keys and defaults as train.py (ignored for bench='sample' when out_dir holds a checkpoint)
data_dir = 'data'
dataset = 'shakespeare_char'  # where the vocabulary size comes from (vocab_size None)
batch_size = 32
block_size = 64
n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
vocab_size = None  # None: the dataset's (see above)
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
dtype = None  # None: bfloat16 on CUDA where supported, else float16; float32 off CUDA (model.device_setup)
compile = None  # None: on for CUDA only (bench=sample: compiles the decode step)
device_peak_flops = None  # MFU's denominator; None: model.PEAK_FLOPS by device name and dtype
# -----------------------------------------------------------------------------
# training configs also set these; the benchmark has no use for them
TRAIN_ONLY = ('eval_interval', 'log_interval', 'eval_iters', 'eval_only', 'init_from', 'gradient_accumulation_steps',
              'max_iters', 'weight_decay', 'beta1', 'beta2', 'grad_clip', 'decay_lr', 'warmup_iters',
              'lr_decay_iters', 'min_lr', 'backend', 'nan_policy')
config = configure(globals(), file_only_keys=TRAIN_ONLY)
if bench not in ('train', 'sample'):
    sys.exit(f"error: bench must be 'train' or 'sample', got '{bench}'")
if steps < 1 or warmup_steps < 0:
    sys.exit(f"error: steps must be >= 1 and warmup_steps >= 0, got steps={steps}, warmup_steps={warmup_steps}")
try:
    device, device_type, dtype, ctx, device_name = device_setup(device, dtype)
except ValueError as e:
    sys.exit(f"error: {e}")
compile = device_type == 'cuda' if compile is None else compile
peak = device_peak_flops or peak_flops(device_name, dtype)
torch.manual_seed(seed)

if bench == 'sample' and out_dir:
    source = os.path.join(out_dir, f'{ckpt}.pt')
    if not os.path.exists(source):
        sys.exit(f"error: no checkpoint at {source}; train one first, or pass --out_dir='' to time a randomly "
                 f"initialised model")
    try:
        model = GPT.from_checkpoint(load_checkpoint(source))
    except ValueError as e:
        sys.exit(f"error: {e}")
else:
    dataset_vocab, source = dataset_vocab_size(os.path.join(data_dir, dataset))
    if dataset_vocab is None and vocab_size is None:
        sys.exit(f"error: no vocabulary size for dataset '{dataset}': prepare it (python data/{dataset}/prepare.py) "
                 f"or pass --vocab_size=N")
    try:
        model = GPT(GPTConfig(**model_config(config, dataset_vocab or vocab_size, f"dataset '{dataset}'")))
    except ValueError as e:
        sys.exit(f"error: {e}")
    source = f"random init, vocabulary from {source}" if vocab_size is None else "random init"
model.to(device)
params = f"{model.get_num_params(non_embedding=False):,} params"
print(f"model: {model.config} ({source})")


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
        loss = None
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
    mfu = model.estimate_mfu(tokens / dt, peak)
    mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device_type == 'cuda' else 'n/a'
    print(f"train | {params} | {model.flops_per_token():,} FLOPs/token | {device_name} {dtype} compile={compile} "
          f"| {1000 * dt:.2f} ms/iter | {tokens / dt:,.0f} tok/s | mfu {'n/a' if mfu is None else f'{100 * mfu:.2f}%'} "
          f"| peak mem {mem} | loss {loss.item():.4f}")

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
    seconds = []
    for name, kv_cache, batched in (('uncached, one sample after another', False, False),
                                    ('uncached, batched', False, True),
                                    ('KV cache, batched', True, True)):
        _, dt = timed(lambda: run(kv_cache, batched))
        seconds.append(dt)
        print(f"sample | {params} | {device_name} {dtype} compile={compile and kv_cache} | {name:<34} "
              f"| {num_samples} x {max_new_tokens} tokens in {dt:.4f} s | {tokens / dt:,.0f} tok/s", flush=True)
    print(f"sample | {source} | batching {seconds[0] / seconds[1]:.2f}x (uncached: one after another -> batched) "
          f"| KV cache {seconds[1] / seconds[2]:.2f}x (batched: uncached -> cached)")
