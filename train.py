"""
Train a mini-GPT, on one CPU, one GPU, or many GPUs with DDP.

    python train.py                                  # the default: char-level shakespeare, ~2 min on a 2-core CPU
    python train.py config/train_shakespeare_char.py --max_iters=2000
    torchrun --standalone --nproc_per_node=4 train.py config/train_shakespeare_char.py

Every global below is a config key: config files (python) and --key=value overrides set them.
"""
import csv
import math
import os
import shlex
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import fields

import numpy as np
import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from configurator import configure
from data.common import dataset_problem, load_meta
from model import GPT, GPTConfig, clean_state_dict, load_checkpoint, save_checkpoint

# -----------------------------------------------------------------------------
# default config: char-level tiny shakespeare, sized for a 2-core laptop CPU
# I/O
out_dir = 'out'
eval_interval = 300
log_interval = 10
eval_iters = 20  # batches per split in each eval; the same batches every time
eval_only = False
init_from = 'scratch'  # 'scratch' or 'resume' (from out_dir/last.pt)
seed = 1337
# data
data_dir = 'data'
dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 32
block_size = 64
# model
n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
vocab_size = None  # None: the dataset's vocabulary; larger pads it (50304: GPT-2's 50257 to a multiple of 64, faster)
# every other GPTConfig field is a config key too, with GPTConfig's default (GPT-2's): n_kv_head, mixer, attn_impl,
# ffn, ffn_mult, norm, norm_pos, residual, pos_emb, tie_weights, init, qk_norm, ... (model.py says what each does)
globals().update({f.name: f.default for f in fields(GPTConfig) if f.name not in globals() and f.name != 'vocab_size'})
# AdamW
learning_rate = 4e-3
max_iters = 1800
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0  # clip gradients at this norm; 0 disables
nan_policy = 'stop'  # a non-finite loss or gradient: 'stop' (exit, save nothing) or 'skip' (skip the step, count it;
# this decides before every optimizer step, so the CPU waits for the GPU once a step: a little slower on a GPU)
# learning rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True
warmup_iters = 100
lr_decay_iters = None  # None: max_iters
min_lr = 1e-4
# system
device = None  # None: cuda, then mps, then cpu; or 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = None  # None: bfloat16 where supported, else float16 with a GradScaler; float32 off CUDA
compile = None  # None: torch.compile on CUDA only
backend = 'nccl'  # DDP backend on CUDA ('gloo' is used on CPU)
# -----------------------------------------------------------------------------
config = configure(globals())
config_name = '+'.join(os.path.basename(a) for a in sys.argv[1:] if not a.startswith('--')) or 'default'
overrides = ' '.join(a for a in sys.argv[1:] if a.startswith('--'))
# -----------------------------------------------------------------------------
# setup
if init_from not in ('scratch', 'resume'):
    sys.exit(f"error: init_from must be 'scratch' or 'resume', got '{init_from}'")
if nan_policy not in ('stop', 'skip'):
    sys.exit(f"error: nan_policy must be 'stop' or 'skip', got '{nan_policy}'")
lr_decay_iters = max_iters if lr_decay_iters is None else lr_decay_iters
if device is None:
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
ddp = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun?
if ddp:
    init_process_group(backend=backend if device.startswith('cuda') else 'gloo')
    rank, local_rank, world_size = int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), int(os.environ['WORLD_SIZE'])
    if device.startswith('cuda'):
        device = f'cuda:{local_rank}'
        torch.cuda.set_device(device)
    if gradient_accumulation_steps % world_size:
        sys.exit(f"error: gradient_accumulation_steps={gradient_accumulation_steps} must be a multiple of "
                 f"the number of processes ({world_size})")
    gradient_accumulation_steps //= world_size
else:
    rank, world_size = 0, 1
master_process = rank == 0
device_type = 'cuda' if device.startswith('cuda') else 'mps' if device.startswith('mps') else 'cpu'
if dtype is None:
    dtype = ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16') if device_type == 'cuda' else 'float32'
if dtype not in ('float32', 'bfloat16', 'float16'):
    sys.exit(f"error: dtype must be float32, bfloat16 or float16, got '{dtype}'")
compile = device_type == 'cuda' if compile is None else compile
tokens_per_iter = gradient_accumulation_steps * world_size * batch_size * block_size

torch.manual_seed(seed + rank)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=ptdtype)
device_name = torch.cuda.get_device_name(device) if device_type == 'cuda' else device_type

# data: train.bin / val.bin are flat memmaps of token ids written by data/<dataset>/prepare.py
data_path = os.path.join(data_dir, dataset)
problem = dataset_problem(data_path)
if problem:
    scripts = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
    script = os.path.join(scripts, dataset, 'prepare.py')
    if not os.path.exists(script):
        known = sorted(d for d in os.listdir(scripts) if os.path.exists(os.path.join(scripts, d, 'prepare.py')))
        sys.exit(f"error: dataset '{dataset}' is not prepared in {data_path} ({problem}), and there is no "
                 f"data/{dataset}/prepare.py to prepare it (datasets: {', '.join(known)})")
    to = '' if os.path.abspath(data_path) == os.path.dirname(script) else f" --out_dir {shlex.quote(data_path)}"
    sys.exit(f"error: dataset '{dataset}' is not prepared in {data_path} ({problem}); run: "
             f"python data/{dataset}/prepare.py{to}")
meta = load_meta(data_path)
tokenizer = {k: meta[k] for k in ('tokenizer', 'vocab_size', 'chars') if k in meta}  # recorded in checkpoints


def load_split(split):
    # a fresh memmap per batch avoids a memory leak (numpy keeps pages of a long-lived memmap resident)
    return np.memmap(os.path.join(data_path, f'{split}.bin'), dtype=meta['dtype'], mode='r')


n_tokens = {split: len(load_split(split)) for split in ('train', 'val')}  # read once: batches only need the length
for split, n in n_tokens.items():
    if n <= block_size:
        sys.exit(f"error: {split}.bin of '{dataset}' holds {n} tokens, fewer than block_size + 1 = {block_size + 1}")


def batch_at(split, ix):
    data = load_split(split)
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix.tolist()])
    if device_type == 'cuda':  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


data_rng = torch.Generator().manual_seed(seed + rank)  # checkpointed, so a resumed run draws the same batches
batch_rng_state = data_rng.get_state()  # the state before the pending (prefetched) batch was drawn


def get_train_batch():
    global batch_rng_state
    batch_rng_state = data_rng.get_state()
    return batch_at('train', torch.randint(n_tokens['train'] - block_size, (batch_size,), generator=data_rng))


eval_rng = torch.Generator().manual_seed(seed)
eval_ix = {s: torch.randint(n - block_size, (eval_iters, batch_size), generator=eval_rng) for s, n in n_tokens.items()}

# model
model_args = {f.name: config[f.name] for f in fields(GPTConfig) if f.name in config}
model_args['vocab_size'] = meta['vocab_size'] if vocab_size is None else vocab_size
if model_args['vocab_size'] < meta['vocab_size']:
    sys.exit(f"error: vocab_size={vocab_size} is smaller than the {meta['vocab_size']} tokens of dataset '{dataset}'")
iter_num, best_val_loss, checkpoint = 0, float('inf'), None
last_path, best_path = os.path.join(out_dir, 'last.pt'), os.path.join(out_dir, 'best.pt')
if init_from == 'resume':  # every check before anything is written
    if not os.path.exists(last_path):
        sys.exit(f"error: init_from='resume' but there is no checkpoint at {last_path}")
    try:
        checkpoint = load_checkpoint(last_path)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if checkpoint['tokenizer'] != tokenizer:
        old, new = (f"{t['tokenizer']}, {t['vocab_size']:,} tokens" for t in (checkpoint['tokenizer'], tokenizer))
        sys.exit(f"error: {last_path} was trained on dataset '{checkpoint['config']['dataset']}' ({old}); dataset "
                 f"'{dataset}' has other tokens ({new}): resume with the dataset it was trained on, or train from "
                 f"scratch in another out_dir")
    changed = [f"{k}={v!r} (checkpoint: {checkpoint['model_args'].get(k)!r})" for k, v in model_args.items()
               if k != 'dropout' and checkpoint['model_args'].get(k) != v]
    if changed:
        sys.exit(f"error: the config's model differs from the one in {last_path}: {', '.join(changed)}; "
                 f"resume with the config it was trained with")
    model_args = dict(checkpoint['model_args'], dropout=dropout)  # the model is the checkpoint's; dropout may change
    iter_num, best_val_loss = checkpoint['iter_num'], checkpoint['best_val_loss']
try:
    gptconf = GPTConfig(**model_args)
except ValueError as e:
    sys.exit(f"error: {e}")
model = GPT(gptconf)

if master_process:  # fail now, not after an hour of training, if checkpoints cannot be written
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, '.write_test'), 'w') as f:
            f.write('ok')
        os.remove(os.path.join(out_dir, '.write_test'))
    except OSError as e:
        sys.exit(f"error: out_dir '{out_dir}' is not writable ({e.strerror})")
    ckpt_bytes = 12 * model.get_num_params(non_embedding=False)  # float32 weights and AdamW's two moments
    free = shutil.disk_usage(out_dir).free
    ours = sum(os.path.getsize(p) for p in (last_path, best_path) if os.path.exists(p))  # to be replaced
    if free + ours < 3 * ckpt_bytes:  # last.pt, best.pt, and the temporary file of the save in progress
        sys.exit(f"error: out_dir '{out_dir}' has {free / 1e6:,.1f} MB free; this model's checkpoints need "
                 f"{3 * ckpt_bytes / 1e6:,.1f} MB (last.pt, best.pt and a temporary file while one is written): "
                 f"free some space or choose another out_dir")
if checkpoint is not None:
    model.load_state_dict(clean_state_dict(checkpoint['model']))
model.to(device)

scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
if checkpoint is not None:
    optimizer.load_state_dict(checkpoint['optimizer'])
    scaler.load_state_dict(checkpoint['scaler'])
    rng = checkpoint['rng']  # each process's random states
    if len(rng) == world_size:
        data_rng.set_state(rng[rank]['data'])
        torch.set_rng_state(rng[rank]['torch'])
        if 'cuda' in rng[rank] and device_type == 'cuda':
            torch.cuda.set_rng_state(rng[rank]['cuda'], device)
    elif master_process:
        print(f"note: {last_path} was written by {len(rng)} processes and this run has {world_size}: batches and "
              f"dropout continue from fresh random states, not exactly as an uninterrupted run would")
checkpoint = None  # free memory

raw_model = model
if compile:
    if master_process:
        print("compiling the model... (takes a minute)")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None)


@torch.no_grad()
def estimate_loss():
    """Mean loss over the same eval_iters batches of each split every time, so evals compare across runs."""
    out = {}
    model.eval()
    for split in ('train', 'val'):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = batch_at(split, eval_ix[split][k])
            with ctx:
                _, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean().item()
    model.train()
    return out


def get_lr(it):
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def rng_states():
    """Every process's random states, a list by rank (DDP: a collective call, so every process makes it)."""
    rng = {'data': batch_rng_state, 'torch': torch.get_rng_state()}
    if device_type == 'cuda':
        rng['cuda'] = torch.cuda.get_rng_state(device)
    if not ddp:
        return [rng]
    rngs = [None] * world_size
    torch.distributed.all_gather_object(rngs, rng)
    return rngs


def write_checkpoint(path, rngs):
    """Everything an exact resume needs, replaced atomically (model.save_checkpoint); never a non-finite model."""
    if not all(p.isfinite().all() for p in raw_model.parameters()):
        sys.exit(f"error: the weights are not finite at iter {iter_num}: not saved, {path} is untouched; "
                 f"lower learning_rate")
    try:
        save_checkpoint({
            'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(),
            'model_args': model_args, 'iter_num': iter_num, 'best_val_loss': best_val_loss, 'config': config,
            'tokenizer': tokenizer, 'rng': rngs,
        }, path)
    except OSError as e:
        sys.exit(f"error: cannot write {path} at iter {iter_num} ({e.strerror}); the previous one is intact: "
                 f"free some space, then resume with --init_from=resume")


def fmt_mfu(mfu):
    return 'n/a' if mfu is None else f"{100 * mfu:.1f}%"


signal_received = None  # SIGTERM or SIGINT (Ctrl-C): finish the step, save last.pt, say how to resume, exit


def on_signal(signum, frame):
    global signal_received
    signal_received = signum
    if signum == signal.SIGINT and not ddp:  # a second Ctrl-C quits at once (checkpoints are atomic); torchrun
        signal.signal(signum, signal.SIG_DFL)  # passes every signal on, and schedulers send SIGTERM more than once


# -----------------------------------------------------------------------------
# training loop
if master_process:
    print(f"model: {gptconf}")
    print(f"{raw_model.get_num_params() / 1e6:.2f}M params | {tokens_per_iter:,} tokens/iter | device {device_name} "
          f"| dtype {dtype} | compile {compile} | ddp world {world_size}")
show_bar = master_process and sys.stderr.isatty()
bar = tqdm(total=max_iters, initial=iter_num, disable=not show_bar, dynamic_ncols=True, unit='it')
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, on_signal)
X, Y = get_train_batch()
t_start = t_log = time.time()
start_iter = log_iter = iter_num
skipped = skipped_in_a_row = 0  # steps skipped for a non-finite loss or gradient (nan_policy='skip')
first_bad = torch.tensor(-1, device=device)  # the first step with a non-finite loss or gradient since the last check
while True:
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only:
        t_eval = time.time()
        losses = estimate_loss()
        if not all(math.isfinite(v) for v in losses.values()):
            sys.exit(f"error: the eval loss is not finite at iter {iter_num} (train {losses['train']}, val "
                     f"{losses['val']}): the model has diverged; not saved, {last_path} is untouched; lower "
                     f"learning_rate")
        rngs = rng_states()
        if master_process:
            improved = losses['val'] < best_val_loss
            best_val_loss = min(best_val_loss, losses['val'])
            if iter_num > start_iter or iter_num == max_iters:
                write_checkpoint(last_path, rngs)
            if improved and iter_num > 0:  # also right after a resume, when the stopped run saved before its eval
                write_checkpoint(best_path, rngs)
            bar.write(f"eval {iter_num:>6} | train {losses['train']:.4f} | val {losses['val']:.4f} "
                      f"| best val {best_val_loss:.4f} | {time.time() - t_start:.1f} s")
        t_log += time.time() - t_eval  # eval time does not count against tokens/s
    if iter_num >= max_iters or eval_only:
        break

    lr = get_lr(iter_num)
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    for micro_step in range(gradient_accumulation_steps):
        if ddp:  # only sync gradients on the last micro step
            model.require_backward_grad_sync = micro_step == gradient_accumulation_steps - 1
        with ctx:
            _, loss = model(X, Y)
            loss = loss / gradient_accumulation_steps
        nonfinite |= ~loss.detach().isfinite()
        X, Y = get_train_batch()  # prefetch the next batch while the GPU works on this one
        scaler.scale(loss).backward()
    grad_norm = None
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if not scaler.is_enabled():  # float16: the GradScaler skips steps with inf gradients itself, by design
            nonfinite |= ~grad_norm.isfinite()
    first_bad = torch.where(nonfinite & (first_bad < 0), iter_num, first_bad)  # on the device: no sync
    # reading it makes the CPU wait for the GPU (this step no longer overlaps the next), so that happens only where
    # it must: every step for nan_policy='skip', at log lines, before evals and the end, and after a signal
    stop = signal_received is not None and not ddp
    if nan_policy == 'skip' or stop or (iter_num + 1) % log_interval == 0 or (iter_num + 1) % eval_interval == 0 \
            or iter_num + 1 >= max_iters:
        flags = torch.stack([first_bad, torch.full_like(first_bad, signal_received is not None)])
        if ddp:  # every process takes the same decision at the same step
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad_iter, stop = flags.tolist()
        if bad_iter >= 0 and nan_policy == 'stop':
            sys.exit(f"error: non-finite loss or gradient at iter {bad_iter}: stopped, nothing saved, {last_path} is "
                     f"untouched; lower learning_rate, or pass --nan_policy=skip to skip such steps"
                     if master_process else 1)
    if nan_policy == 'skip' and bad_iter < 0:
        skipped_in_a_row = 0
    elif nan_policy == 'skip':
        first_bad.fill_(-1)
        skipped, skipped_in_a_row = skipped + 1, skipped_in_a_row + 1
        what = f"loss {loss.item() * gradient_accumulation_steps:.4g}"
        what += '' if grad_norm is None else f", gradient norm {grad_norm.item():.4g}"
        if skipped_in_a_row == 10:
            sys.exit(f"error: 10 steps in a row with a non-finite loss or gradient, up to iter {iter_num} ({what}): "
                     f"the model has diverged; lower learning_rate" if master_process else 1)
        if master_process:
            bar.write(f"iter {iter_num}: non-finite loss or gradient ({what}): step skipped, {skipped} so far")
        if not scaler.is_enabled():  # float16: the GradScaler skips a step with non-finite gradients itself
            optimizer.zero_grad(set_to_none=True)  # no gradients: the optimizer step below changes nothing
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    bar.update(1)

    if iter_num % log_interval == 0 and master_process:
        lossf = loss.item() * gradient_accumulation_steps
        dt = (time.time() - t_log) / (iter_num - log_iter)
        t_log, log_iter = time.time(), iter_num
        mfu = raw_model.estimate_mfu(tokens_per_iter, dt, device_name)
        if show_bar:
            bar.set_postfix_str(f"loss {lossf:.4f} | {tokens_per_iter / dt:,.0f} tok/s | mfu {fmt_mfu(mfu)}")
        else:
            print(f"iter {iter_num:>6} | loss {lossf:.4f} | lr {lr:.2e} | {tokens_per_iter / dt:,.0f} tok/s "
                  f"| mfu {fmt_mfu(mfu)} | {1000 * dt:.1f} ms/iter" + (f" | {skipped} skipped" if skipped else ''),
                  flush=True)
    if stop:
        rngs = rng_states()
        bar.close()
        if master_process:
            write_checkpoint(last_path, rngs)
            launcher = f"torchrun --standalone --nproc_per_node={world_size}" if ddp else "python"
            args = [a for a in sys.argv[1:] if not a.startswith('--init_from=')] + ['--init_from=resume']
            print(f"stopped at iter {iter_num}: saved {last_path}; resume with: {launcher} {sys.argv[0]} "
                  f"{shlex.join(args)}", flush=True)
        if ddp:
            torch.distributed.barrier()  # no process exits (and makes torchrun stop the others) before the save
            destroy_process_group()
        sys.exit(128 + (signal_received or signal.SIGTERM))  # 130 for SIGINT, 143 for SIGTERM, as the shell does
bar.close()
train_seconds = time.time() - t_start

if master_process and not eval_only:
    n_params = raw_model.get_num_params()
    tokens = (iter_num - start_iter) * tokens_per_iter
    print(f"done {iter_num} iters | best val {best_val_loss:.4f} | {train_seconds:.1f} s training "
          f"| {n_params / 1e6:.2f}M params | {tokens:,} tokens | checkpoints in {out_dir}"
          + (f" | {skipped} steps skipped (non-finite)" if skipped else ''))
    results = os.path.join(out_dir, 'results.csv')
    new = not os.path.exists(results)
    with open(results, 'a', newline='') as f:
        w = csv.writer(f)
        if new:
            w.writerow(['date', 'config', 'overrides', 'params', 'iters', 'tokens', 'best_val_loss', 'train_seconds',
                        'device'])
        w.writerow([time.strftime('%Y-%m-%d %H:%M:%S'), config_name, overrides, n_params, iter_num, tokens,
                    f"{best_val_loss:.4f}", f"{train_seconds:.1f}", device_name])
if ddp:
    destroy_process_group()
