"""
Benchmark training throughput of a mini-GPT config on random tokens (no dataset needed).

    python bench.py                                       # the default CPU model
    python bench.py config/train_shakespeare_char.py --batch_size=64

Prints one line: ms/iter, tokens/s, MFU (where the device's peak is known) and peak memory.
"""
import time
from contextlib import nullcontext

import torch

from configurator import configure
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
batch_size = 32
block_size = 64
vocab_size = 65
n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
learning_rate = 1e-3
warmup_steps = 5  # untimed steps first (compilation, allocator warm-up)
steps = 20
seed = 1337
device = None  # None: cuda, then mps, then cpu
dtype = None  # None: bfloat16 on CUDA where supported, else float32
compile = None  # None: on for CUDA only
# -----------------------------------------------------------------------------
configure(globals())
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

config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                   dropout=dropout, bias=bias)
model = GPT(config).to(device)
optimizer = model.configure_optimizers(0.1, learning_rate, (0.9, 0.95), device_type)
step_model = torch.compile(model) if compile else model
X = torch.randint(vocab_size, (batch_size, block_size), device=device)
Y = torch.randint(vocab_size, (batch_size, block_size), device=device)


def sync():
    if device_type == 'cuda':
        torch.cuda.synchronize()


def train_step():
    with ctx:
        _, loss = step_model(X, Y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


for _ in range(warmup_steps):
    train_step()
sync()
if device_type == 'cuda':
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for _ in range(steps):
    loss = train_step()
sync()
dt = (time.perf_counter() - t0) / steps
tokens = batch_size * block_size
mfu = model.estimate_mfu(tokens, dt, device_name)
mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device_type == 'cuda' else 'n/a'
print(f"train | {model.get_num_params() / 1e6:.2f}M params | {device_name} {dtype} compile={compile} "
      f"| {1000 * dt:.1f} ms/iter | {tokens / dt:,.0f} tok/s | mfu {'n/a' if mfu is None else f'{100 * mfu:.1f}%'} "
      f"| peak mem {mem} | loss {loss.item():.4f}")
