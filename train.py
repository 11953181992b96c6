"""
Train a mini-GPT, on one CPU, one GPU, or many processes (DDP, or FSDP2 with --parallel=fsdp), on one machine or many.

    python train.py                                  # the default: char-level shakespeare, 1-2 min on a 2-core CPU
    python train.py config/train_shakespeare_char.py --max_iters=2000
    python train.py config/finetune_shakespeare.py   # fine-tune OpenAI's GPT-2 (init_from='gpt2-xl'; or a local folder)
    torchrun --standalone --nproc_per_node=4 train.py config/train_shakespeare_char.py
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --nproc_per_node=8 train.py ...

It reads top to bottom: the settings (every global below is a config key: config files, which are python, and
--key=value overrides set them), the setup (device, processes, data, model, optimizer), the state of the run, the
helpers that use it, then the training loop.
"""
import time

_t_launch = time.time()  # the eval lines' wall time counts from here: imports, compilation and evals included
import contextlib  # noqa: E402 (the imports below count)
import csv
import gc
import math
import os
import shlex
import shutil
import signal
import sys
import textwrap
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import hf
from common import (append_csv, compile_model, compile_on, device_setup, load_checkpoint, or_exit, peak_flops, pyplot,
                    save_checkpoint)
from configurator import configure, split_args
from data.common import Tokenizer, prepared_meta
from model import GPT, GPTConfig, clean_state_dict, eval_sums, model_config
from optim import EMA, OPTIMIZERS, key_error, lr_at
from parallel import agree, full_tensor, load_optimizer_state, model_state, optimizer_state, shard, split_batch
from dataflow import param_norms, trace_model
from fp8 import use_float8_head

_t_imports = time.time()  # the startup line splits launch -> first step into imports, setup, eval and the first step

# -----------------------------------------------------------------------------
# default config: char-level tiny shakespeare, sized for a 2-core laptop CPU
# I/O
out_dir = 'out'  # where checkpoints (best.pt, last.pt), evals.csv, results.csv and loss.png go
eval_interval = 625  # steps between evals (and checkpoints)
log_interval = 10  # steps between log lines
eval_iters = 20  # batches per split in each eval; the same batches every time
eval_only = False  # eval the model once (init_from's) and exit, training nothing
eval_at_start = True  # also eval before the first step (the untrained model, or where a resumed run starts)
init_from = 'scratch'  # 'scratch', 'resume' (from out_dir/last.pt), or pretrained weights to fine-tune: a GPT-2 name
# ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'; needs transformers) or a Hugging Face folder, GPT-2 or Llama (hf.py)
overwrite = False  # a new run (not a resume) into an out_dir that holds checkpoints: False stops, True replaces them
seed = 1337  # the initial weights, the batches and dropout follow from it
# data
data_dir = 'data'  # the folder of the datasets' folders
dataset = 'shakespeare_char'  # data_dir/<dataset>/ holds train.bin, val.bin, meta.json (data/<dataset>/prepare.py)
gradient_accumulation_steps = 1  # micro-batches of batch_size per optimizer step, counted over all processes
batch_size = 32  # sequences per micro-batch (and per eval batch)
block_size = 64
data_on_device = None  # hold train.bin and val.bin in device memory; None: on CUDA, if they fit in 2 GiB as int32
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
# optimizer
optim = 'muon'  # 'muon' (Keller Jordan 2024: Muon for the matrices inside the blocks, AdamW for the rest) or 'adamw'
muon_ns = 'jordan'  # Muon's Newton-Schulz (optim.NEWTON_SCHULZ): 'jordan' (Muon's), 'polar_express' or 'turbo'
learning_rate = 1e-2  # the peak learning rate (after the warmup)
max_iters = 1250  # optimizer steps in all
weight_decay = 0.1  # decoupled weight decay of the 2-D weights (x learning_rate per step)
beta1 = 0.9  # AdamW's betas (and Muon's AdamW part)
beta2 = 0.99  # AdamW's second-moment decay
grad_clip = 1.0  # clip gradients at this norm; 0 disables
ema_decay = 0.0  # > 0: also keep an exponential moving average of the weights (Polyak & Juditsky 1992), which evals
# measure, best.pt keeps and sample.py reads; training goes on with the trained weights (the checkpoints keep both)
nan_policy = 'stop'  # a non-finite loss or gradient: 'stop' (exit, save nothing) or 'skip' (skip the step, count it;
# this decides before every optimizer step, so the CPU waits for the GPU once a step: a little slower on a GPU)
# learning rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True  # False: learning_rate throughout, no warmup or decay
warmup_iters = 50  # steps of linear warmup
lr_decay_iters = None  # None: max_iters
min_lr = 1e-4  # the learning rate at the end of the cosine decay
# system
device = None  # None: cuda, then mps, then cpu; or 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = None  # None: bfloat16 where supported, else float16 with a GradScaler; float32 off CUDA (TF32 matmuls on CUDA)
compile = None  # None: torch.compile on CUDA, for a run of 3e15 training FLOPs or more (common.COMPILE_FLOPS:
# a shorter one loses more to compiling than it wins; the default config, 6.7e12, runs eager and as a CUDA graph)
compile_eval = True  # evals through the compiled model too; False: the plain one (no second graph to trace and
# compile for eval mode: seconds that a short run's few evals do not win back)
cuda_graph = None  # the whole training step (forward, backward, clip, optimizer) captured once as a CUDA graph and
# replayed: one launch a step, not hundreds (a small model's step is bound by them). None: on where the run allows it:
# one CUDA process, bfloat16 or float32, nan_policy='stop', no grad_norms, a compile_mode without CUDA graphs of its own
compile_mode = 'default'  # torch.compile's mode: 'max-autotune' tries more kernels (slower compile), 'reduce-overhead'
# replays CUDA graphs (fewer launches), 'max-autotune-no-cudagraphs'; or 'cudagraphs': PyTorch's own kernels as CUDA
# graphs, no inductor (compiles in ~1 s); the same maths in every mode
fp8_head = False  # the output layer's products in float8 (fp8.py): for GPUs with float8 matmuls (H100)
backend = 'nccl'  # torch.distributed backend on CUDA ('gloo' is used on CPU)
parallel = 'ddp'  # several processes: 'ddp' (each holds the whole model) or 'fsdp' (FSDP2: each holds a shard of
# every weight, gradient and optimizer state: models past one GPU's memory); one process: no effect
device_peak_flops = None  # MFU's denominator for one device; None: common.PEAK_FLOPS by device name and dtype
trace = False  # one forward and backward pass of a tiny batch, printed stage by stage (shapes, gradients); then exit
grad_norms = False  # at every log line, each block's gradient norm (before clipping) to out_dir/grad_norms.csv
# experiment tracking (nanoGPT's keys): evals.csv is always written; with wandb_log each of its rows goes to wandb too
wandb_log = False  # needs wandb (pip install wandb); WANDB_MODE=offline keeps the run on disk for a later wandb sync
wandb_project = 'mini-gpt'  # the wandb project the runs go to
wandb_run_name = ''  # '' = the name wandb makes up
# -----------------------------------------------------------------------------
config = configure(globals())
config_files, config_overrides = split_args(config, sys.argv[1:])
config_name = '+'.join(os.path.basename(f) for f in config_files) or 'default'
overrides = ' '.join(f"--{k}={v}" for k, v in config_overrides)
# -----------------------------------------------------------------------------
# setup: checks, the device, the processes
if nan_policy not in ('stop', 'skip'):
    sys.exit(f"error: nan_policy must be 'stop' or 'skip', got '{nan_policy}'")
if error := key_error(optim, muon_ns):
    sys.exit(f"error: {error}")
if parallel not in ('ddp', 'fsdp'):
    sys.exit(f"error: parallel must be 'ddp' or 'fsdp', got '{parallel}'")
bad = [f"{k}={v} (at least {low})" for k, v, low in (
    ('max_iters', max_iters, 0), ('warmup_iters', warmup_iters, 0), ('eval_interval', eval_interval, 1),
    ('log_interval', log_interval, 1), ('eval_iters', eval_iters, 1), ('batch_size', batch_size, 1),
    ('gradient_accumulation_steps', gradient_accumulation_steps, 1)) if v < low]
if data_on_device not in (None, True, False):
    bad.append(f"data_on_device={data_on_device!r} (True, False, or None: on CUDA where it fits)")
if bad:
    sys.exit(f"error: {'; '.join(bad)}")
lr_decay_iters = max_iters if lr_decay_iters is None else lr_decay_iters
device, device_type, dtype, ctx, device_name = or_exit(device_setup, device, dtype)
or_exit(compile_on, compile, device_type)  # a wrong value stops here; None is resolved once the model exists
distributed = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun? (rank: over every machine; local: this one)
rank, local_rank, world_size, local_world_size = (int(os.environ[k]) for k in (
    'RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE')) if distributed else (0, 0, 1, 1)
master_process = rank == 0
if wandb_log and master_process:  # now, not after training
    try:
        import wandb
    except ImportError:
        sys.exit("error: wandb_log=True needs wandb: pip install wandb (or --wandb_log=False: evals.csv is written "
                 "either way)")
fsdp = distributed and parallel == 'fsdp'  # with one process there is nothing to shard
split = split_batch(gradient_accumulation_steps, batch_size, world_size)  # parallel.py: the batch rule
if split is None:
    total = gradient_accumulation_steps * batch_size
    fits = [n for n in range(1, total + 1) if total % n == 0]
    sys.exit(f"error: an optimizer step takes gradient_accumulation_steps x batch_size = {gradient_accumulation_steps}"
             f" x {batch_size} = {total} sequences, which do not divide among {world_size} processes: run "
             f"{', '.join(map(str, fits[:12]))}{' ...' if len(fits) > 12 else ''} processes, or make the product a "
             f"multiple of {world_size}" if master_process else 1)
micro_steps, micro_batch = split
tokens_per_iter = world_size * micro_steps * micro_batch * block_size  # = gradient_accumulation_steps * batch_size * T
if distributed:
    if device_type == 'cuda':
        gpus = torch.cuda.device_count()
        if local_world_size > gpus:
            sys.exit(f"error: {local_world_size} processes on this machine, but it has {gpus} GPUs: "
                     f"one process per GPU (--nproc_per_node={gpus}), or --device=cpu" if local_rank == 0 else 1)
        device = f'cuda:{local_rank}'
        torch.cuda.set_device(device)
    init_process_group(backend=backend if device_type == 'cuda' else 'gloo')
peak = device_peak_flops or peak_flops(device_name, dtype)
torch.manual_seed(seed)  # the initial weights: the same on every process (DDP broadcasts rank 0's, FSDP2 does not)

# data: train.bin / val.bin are flat memmaps of token ids written by data/<dataset>/prepare.py
data_path = os.path.join(data_dir, dataset)
meta = or_exit(prepared_meta, data_path, dataset)
tokenizer = {k: meta[k] for k in ('tokenizer', 'vocab_size', 'chars', 'bpe') if k in meta}  # in checkpoints
token_bytes = torch.from_numpy(Tokenizer(meta).token_bytes()).to(device)  # (vocab,) UTF-8 bytes of each token's text


def load_split(split):
    # a fresh memmap per batch avoids a memory leak (numpy keeps pages of a long-lived memmap resident)
    return np.memmap(os.path.join(data_path, f'{split}.bin'), dtype=meta['dtype'], mode='r')


n_tokens = {split: len(load_split(split)) for split in ('train', 'val')}  # read once: batches only need the length
for split, n in n_tokens.items():
    if n <= block_size:
        sys.exit(f"error: {split}.bin of '{dataset}' holds {n} tokens, fewer than block_size + 1 = {block_size + 1}")
if data_on_device is None:  # both splits in device memory (as int32), batches gathered there: no host work per step
    data_on_device = device_type == 'cuda' and 4 * sum(n_tokens.values()) <= 2 ** 31
on_device = {s: torch.from_numpy(load_split(s).astype(np.int32)).to(device) for s in n_tokens if data_on_device}


def batch_at(split, ix):
    """The sequences starting at the positions ix (B,): inputs x and targets y (B, block_size), int64 on the device."""
    if split in on_device:
        if device_type == 'cuda':
            ix = ix.pin_memory()
        pos = ix.to(device, non_blocking=True)[:, None] + torch.arange(block_size, device=device)  # (B, block_size)
        return on_device[split][pos].long(), on_device[split][pos + 1].long()
    data = load_split(split)
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix.tolist()])
    if device_type == 'cuda':  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


data_rng = torch.Generator().manual_seed(seed)  # the training batches: the same on every process; checkpointed
eval_rng = torch.Generator().manual_seed(seed)
eval_ix = {s: torch.randint(n - block_size, (eval_iters, batch_size), generator=eval_rng) for s, n in n_tokens.items()}

# the model: from scratch, from a checkpoint (resume), or from pretrained weights
model_args = or_exit(model_config, config, meta['vocab_size'], f"dataset '{dataset}'")
iter_num, best_val_loss, best_val_bpb, checkpoint, weights = 0, float('inf'), float('inf'), None, None
pretrained = None  # the GPT-2 name or folder whose weights the model started from, kept through resumes
last_path, best_path = os.path.join(out_dir, 'last.pt'), os.path.join(out_dir, 'best.pt')
evals_path = os.path.join(out_dir, 'evals.csv')  # every eval of this run (a scratch run starts it anew)
if init_from == 'resume':  # every check before anything is written
    if not os.path.exists(last_path):
        sys.exit(f"error: init_from='resume' but there is no checkpoint at {last_path}")
    checkpoint = or_exit(load_checkpoint, last_path)
    if checkpoint['tokenizer'] != tokenizer:
        old, new = (f"{t['tokenizer']}, {t['vocab_size']:,} tokens" for t in (checkpoint['tokenizer'], tokenizer))
        sys.exit(f"error: {last_path} was trained on dataset '{checkpoint['config']['dataset']}' ({old}); dataset "
                 f"'{dataset}' has other tokens ({new}): resume with the dataset it was trained on, or train from "
                 f"scratch in another out_dir")
    pretrained = checkpoint.get('pretrained')  # a fine-tuned model is its weights', whatever the config's keys say
    changed = [f"{k}={v!r} (checkpoint: {checkpoint['model_args'].get(k)!r})" for k, v in model_args.items()
               if k != 'dropout' and checkpoint['model_args'].get(k) != v]
    if changed and pretrained is None:
        sys.exit(f"error: the config's model differs from the one in {last_path}: {', '.join(changed)}; "
                 f"resume with the config it was trained with")
    trained_with = checkpoint['config'].get('optim', 'adamw')  # checkpoints of before the optim key: AdamW
    if trained_with != optim:
        sys.exit(f"error: {last_path} was trained with optim='{trained_with}', this run has optim='{optim}': its "
                 f"optimizer state does not fit; resume with --optim={trained_with}")
    model_args = dict(checkpoint['model_args'], dropout=dropout)  # the model is the checkpoint's; dropout may change
    iter_num, best_val_loss = checkpoint['iter_num'], checkpoint['best_val_loss']
    best_val_bpb = checkpoint.get('best_val_bpb', float('nan'))  # checkpoints of before bits per byte have none
    if master_process:
        print(f"resuming {last_path} at iter {iter_num:,} (best val {best_val_loss:.4f}), to max_iters={max_iters:,}")
    if device_type == 'cpu' and checkpoint.get('cpu_threads') and not os.environ.get('OMP_NUM_THREADS'):
        torch.set_num_threads(checkpoint['cpu_threads'])  # the threads of the run it continues: the same sums, the
        # exact curve (OMP_NUM_THREADS chooses otherwise)
elif init_from != 'scratch':  # pretrained weights: GPT-2 from the hub, or a Hugging Face folder (hf.py)
    weights = or_exit(hf.load, init_from, block_size)
    theirs = or_exit(hf.tokenizer_of, weights)
    if theirs != tokenizer:
        sys.exit(f"error: {init_from} reads {theirs['tokenizer']} tokens ({theirs['vocab_size']:,}); dataset "
                 f"'{dataset}' has {tokenizer['tokenizer']} tokens ({tokenizer['vocab_size']:,}): fine-tune on a "
                 f"dataset prepared with its tokenizer (gpt2: python data/shakespeare/prepare.py)")
    model_args, pretrained = dict(weights['model_args'], dropout=dropout), init_from
model = GPT(GPTConfig(**model_args))  # the GPT itself, always: its weights, config, FLOPs (FSDP shards it in place)
if weights is not None:
    model.load_state_dict(weights['model'])
    weights = None  # free memory
if fp8_head:
    or_exit(use_float8_head, model, device)
compile = compile_on(compile, device_type, model.flops_per_token() * tokens_per_iter * max_iters)  # None: on CUDA
# for a run long enough to win back compiling (common.COMPILE_FLOPS)
graph_unfit = [why for why, bad in (  # what keeps the training step from being one CUDA graph
    ("a CUDA device", device_type != 'cuda'), ("one process (torchrun started several)", distributed),
    ("bfloat16 or float32 (float16's GradScaler decides on the CPU)", dtype == 'float16'),
    ("nan_policy='stop' ('skip' decides on the CPU before each optimizer step)", nan_policy == 'skip'),
    ("grad_norms=False", grad_norms), ("a compile_mode without CUDA graphs of its own (not reduce-overhead, "
     "cudagraphs or max-autotune)", compile and compile_mode in ('reduce-overhead', 'cudagraphs', 'max-autotune')))
    if bad]
if cuda_graph and graph_unfit:
    sys.exit(f"error: cuda_graph=True needs {'; '.join(graph_unfit)}")
cuda_graph = not graph_unfit if cuda_graph is None else cuda_graph
if rank > 0:  # dropout differs between processes (rank 0 goes on as one process does); the data order does not
    torch.manual_seed(seed + rank)
if trace:  # watch data flow through the real model, then stop (nothing is written)
    X, Y = batch_at('train', torch.randint(n_tokens['train'] - block_size, (2,), generator=data_rng))
    X, Y = X[:, :8].contiguous(), Y[:, :8].contiguous()  # 2 sequences of (at most) 8 tokens
    print(f"model: {model.config}\n" + '\n'.join(trace_model(model.to(device), X, Y)))
    sys.exit(0)

logged_iters = set()  # the evals a resumed run's evals.csv holds already
if master_process:  # fail now, not after an hour of training, if checkpoints cannot be written
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, '.write_test'), 'w') as f:
            f.write('ok')
        os.remove(os.path.join(out_dir, '.write_test'))
    except OSError as e:
        sys.exit(f"error: out_dir '{out_dir}' is not writable ({e.strerror})")
    trained = [p for p in (last_path, best_path) if os.path.exists(p)]
    if init_from != 'resume' and not eval_only and trained and not overwrite:  # nothing trained is lost unasked
        names = ', '.join(os.path.basename(p) for p in trained)
        sys.exit(f"error: {out_dir} holds the checkpoints of an earlier run ({names}): resume it with "
                 f"--init_from=resume, start over with --overwrite=True (it replaces them), or train into another "
                 f"--out_dir")
    if init_from != 'resume' and os.path.exists(evals_path):
        os.remove(evals_path)  # a new run, a new curve (as its checkpoints replace the old ones)
    if os.path.exists(evals_path):
        with open(evals_path, newline='') as f:
            logged_iters = {int(r['iter']) for r in csv.DictReader(f)}
    ckpt_bytes = (16 if ema_decay > 0 else 12) * model.get_num_params(non_embedding=False)  # float32 weights, AdamW's
    # two moments (and the averaged weights)
    free = shutil.disk_usage(out_dir).free
    ours = sum(os.path.getsize(p) for p in (last_path, best_path) if os.path.isfile(p))  # to be replaced
    if free + ours < 3 * ckpt_bytes:  # last.pt, best.pt, and the temporary file of the save in progress
        sys.exit(f"error: out_dir '{out_dir}' has {free / 1e6:,.1f} MB free; this model's checkpoints need "
                 f"{3 * ckpt_bytes / 1e6:,.1f} MB (last.pt, best.pt and a temporary file while one is written): "
                 f"free some space or choose another out_dir")

# the weights on the device, the optimizer, and a resumed run's state
if checkpoint is not None:  # every process has read last.pt (the checks above): the whole model loads, FSDP or not
    model.load_state_dict(clean_state_dict(checkpoint.get('trained_model', checkpoint['model'])))
model.to(device)
if fsdp:
    shard(model, device_type, world_size, dtype)  # in place: its parameters become this process's shards
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))  # FSDP2 too: DTensor reduces its found_inf
optimizer = OPTIMIZERS[optim](model, weight_decay, learning_rate, (beta1, beta2), device_type, compile=compile,
                              ns=muon_ns)
for group in optimizer.param_groups:  # torch's AdamW steps under a CUDA graph's capture only when capturable
    group['capturable'] = cuda_graph
ema = None  # ema_decay > 0: the averaged weights (optim.EMA), from a resumed checkpoint's 'model', else the model's
if ema_decay > 0:
    ema = EMA(model, ema_decay, clean_state_dict(checkpoint['model']) if checkpoint is not None else None)
if checkpoint is not None:
    load_optimizer_state(model, optimizer, checkpoint['optimizer'], fsdp)
    scaler.load_state_dict(checkpoint['scaler'])
    rng = checkpoint['rng']  # each process's random states
    data_rng.set_state(rng[0]['data'])  # the data order is the same for any number of processes
    if len(rng) == world_size:
        torch.set_rng_state(rng[rank]['torch'])
        if 'cuda' in rng[rank] and device_type == 'cuda':
            torch.cuda.set_rng_state(rng[rank]['cuda'], device)
    elif master_process:
        print(f"note: {last_path} was written by {len(rng)} processes and this run has {world_size}: the batches "
              f"continue exactly, dropout from fresh random states")
checkpoint = None  # free memory
lr_now = torch.tensor(float(learning_rate), device=device)  # cuda_graph: every group's lr, read on the device (a
for group in optimizer.param_groups if cuda_graph else []:  # number would be baked into the graph)
    group['lr'] = lr_now

# what the steps run: the model compiled (on CUDA by default), and under DDP wrapped to average the gradients;
# evals run it too, or (compile_eval=False) the plain model
if compile and master_process:
    print("compiling the model... (takes a minute)")
train_model = compile_model(model, compile_mode) if compile else model  # the same weights as model
if distributed and not fsdp:
    train_model = DDP(train_model, device_ids=[local_rank] if device_type == 'cuda' else None)

if master_process:
    print(f"model: {model.config}")
    print(f"params {model.get_num_params(non_embedding=False):,} total | {model.get_num_params():,} "
          f"non-embedding (without lookup tables: the N of 6N) | {model.flops_per_token():,} FLOPs/token "
          f"| device {device_name} | dtype {dtype} | compile {compile}" + (f" | {parallel}" if distributed else "")
          + (f" | cuda graph {cuda_graph}" if device_type == 'cuda' else f" | threads {torch.get_num_threads()}"
             if device_type == 'cpu' else ""))
    print(f"batch {world_size} processes x {micro_steps} micro-steps x {micro_batch} x {block_size} tokens = "
          f"{tokens_per_iter:,} tokens per optimizer step (gradient_accumulation_steps x batch_size = "
          f"{gradient_accumulation_steps} x {batch_size} sequences, the same for any number of processes)")
if wandb_log and master_process:
    wandb.init(project=wandb_project, name=wandb_run_name or None, config=config)

# -----------------------------------------------------------------------------
# the state of the run: what changes as it trains, in one place (the helpers below update it, checkpoints save it)
run = SimpleNamespace(
    iter_num=iter_num,  # optimizer steps taken
    start_iter=iter_num,  # the step this process started at (a resumed run: its checkpoint's)
    best_val_loss=best_val_loss, best_val_bpb=best_val_bpb,  # the lowest val loss so far, and its bits per byte
    batch_rng_state=None,  # data_rng's state before the pending (prefetched) step's batches were drawn
    first_bad=torch.tensor(-1, device=device),  # the first step with a non-finite loss or gradient since the last check
    skipped=0, skipped_in_a_row=0,  # steps skipped for a non-finite loss or gradient (nan_policy='skip')
    signal=None,  # SIGTERM or SIGINT (Ctrl-C) received: finish the step, save last.pt, say how to resume, exit
    t_start=None, eval_seconds=0.0,  # when training started (the loop sets it); the seconds spent in evals since
    first_step=None,  # (time, eval_seconds) at the end of the first step: results.csv's tokens/s leaves it out
    t_log=None, log_iter=iter_num,  # the log lines' window: their rate is over the steps since (evals left out)
    graph=None, graph_inputs=None, graph_outputs=None,  # cuda_graph: the captured step, its batches, its results,
    side_stream=None,  # and the stream of the steps before the capture
)
show_bar = master_process and sys.stderr.isatty()  # a progress bar on a terminal; log lines go to a file or a pipe
print_lines = master_process and not (show_bar and sys.stdout.isatty())
bar = tqdm(total=max_iters, initial=iter_num, disable=not show_bar, dynamic_ncols=True, unit='it')


# ----------------------------------------------------------------------------- helpers of the training loop
def get_lr(it):
    return lr_at(it, learning_rate, warmup_iters, lr_decay_iters, min_lr) if decay_lr else learning_rate


def set_lr(lr):
    if cuda_graph:
        lr_now.fill_(lr)  # no sync: the copy is queued before the step that reads it
    else:
        for param_group in optimizer.param_groups:
            param_group['lr'] = lr


def get_step_batches():
    """This process's micro-batches of the next optimizer step. Every step draws the config's accum x batch
    sequences and process r takes the r-th share: the same sequences, and so the same curve, for any world size."""
    run.batch_rng_state = data_rng.get_state()
    ix = torch.randint(n_tokens['train'] - block_size, (world_size, micro_steps, micro_batch), generator=data_rng)
    return [batch_at('train', i) for i in ix[rank]]


def sync_gradients(now):
    """Whether this backward pass averages the gradients over the processes (DDP: all-reduce, FSDP: reduce-scatter
    to the shards); off for all but the last micro-step, which saves the communication of the others."""
    if fsdp:
        model.set_requires_gradient_sync(now)
    elif distributed:
        train_model.require_backward_grad_sync = now


def log_block_grad_norms():
    """Each block's gradient norm, and the embeddings' and the output layer's, to grad_norms.csv: how well the
    gradient reaches the first blocks (without residual connections, it fades; the ladder's rungs 07 and 08).
    Every process calls it (FSDP gathers the shards); rank 0 writes."""
    def part(name):  # a tied output layer is the token embedding: counted there
        return f"block_{name.split('.')[1]}" if name.startswith('blocks.') else \
            'head' if name.startswith(('ln_f.', 'lm_head.')) else 'embeddings'
    norms = param_norms(model, part)
    if master_process:
        append_csv(os.path.join(out_dir, 'grad_norms.csv'),
                   {'iter': run.iter_num + 1, **{k: f"{g / scaler.get_scale():.4e}" for k, (_, g, _) in norms.items()}})


def train_step(batches):
    """Forward and backward over this process's micro-batches, then unscale and clip. Returns the step's loss (the
    mean over its micro-batches, a device tensor), the gradient norm, and whether anything was non-finite (a device
    tensor: no sync). Each micro-batch's loss is divided by their number: the gradients add up to the mean's."""
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    step_loss = torch.zeros((), device=device)
    for micro_step, (X, Y) in enumerate(batches):
        sync_gradients(micro_step == micro_steps - 1)
        with ctx:
            _, loss = train_model(X, Y)
            loss = loss / micro_steps
        nonfinite |= ~loss.detach().isfinite()
        step_loss += loss.detach()
        scaler.scale(loss).backward()
    if grad_norms and (run.iter_num + 1) % log_interval == 0:
        log_block_grad_norms()
    grad_norm = None
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        # FSDP2: the norm over every shard, of every process (a replicated DTensor)
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        if not scaler.is_enabled():  # float16: the GradScaler skips steps with inf gradients itself, by design
            nonfinite |= ~grad_norm.isfinite()
    return step_loss, grad_norm, nonfinite


def graphed_step(batches):
    """cuda_graph: train_step and the optimizer's step as one CUDA graph, the same maths. The first 3 steps run as
    usual, on a side stream (compilation, cuBLAS's workspaces, the optimizer's state: nothing is first made during the
    capture); the next is captured with its batches as the graph's inputs, and every later step copies its batches
    into them and replays it. Returns train_step's results, which each replay overwrites."""
    if run.graph is None and run.iter_num < run.start_iter + 3:  # 3 steps as usual first
        side = run.side_stream = run.side_stream or torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            results = train_step(batches)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # the capture makes the gradients anew, in the graph's memory
        torch.cuda.current_stream().wait_stream(side)
        return results
    if run.graph is None:
        run.graph, run.graph_inputs = torch.cuda.CUDAGraph(), batches
        with torch.cuda.graph(run.graph):
            run.graph_outputs = train_step(batches)
            optimizer.step()
    else:
        for (X, Y), (graph_X, graph_Y) in zip(batches, run.graph_inputs):
            graph_X.copy_(X)
            graph_Y.copy_(Y)
    run.graph.replay()
    return run.graph_outputs


@torch.no_grad()
def estimate_loss():
    """Per split, over the same eval_iters batches every time (so evals compare across runs): the loss in nats per
    token, next-token accuracy, and bits per byte of the text (the nats of the tokens that have text, over ln 2 and
    their UTF-8 bytes), on which character and BPE models compare. <|endoftext|> has no text: left out of bpb."""
    out = {}
    model.eval()
    for split in ('train', 'val'):
        sums = np.zeros(5)
        for k in range(eval_iters):
            X, Y = batch_at(split, eval_ix[split][k])
            with ctx:
                logits, _ = (train_model if compile_eval else model)(X)  # compiled, or plain
            sums += eval_sums(logits, Y, token_bytes)
        nats, correct, tokens, text_nats, text_bytes = sums.tolist()  # python floats: checkpoints hold no numpy
        out[split] = {'loss': nats / tokens, 'acc': correct / tokens, 'bpb': text_nats / math.log(2) / text_bytes}
    model.train()
    return out


def stop(message, code=1):
    """Every process stops; rank 0 prints the one error line (the end of this file leaves the process group)."""
    sys.exit(message if master_process else code)


def rng_states():
    """Every process's random states, a list by rank (several processes: a collective, every process calls it)."""
    rng = {'data': run.batch_rng_state, 'torch': torch.get_rng_state()}
    if device_type == 'cuda':
        rng['cuda'] = torch.cuda.get_rng_state(device)
    if not distributed:
        return [rng]
    rngs = [None] * world_size
    torch.distributed.all_gather_object(rngs, rng)
    return rngs


def checkpoint_state():
    """Everything an exact resume needs, the same whether 1 process, DDP or FSDP wrote it. A collective (the RNGs of
    every process; FSDP: the shards): every process calls it, rank 0 gets the whole of it. 'model' is what evals
    measure and sample.py reads: with ema_decay > 0 the averaged weights, and 'trained_model' the trained ones."""
    state = {'model': model_state(model, fsdp), 'optimizer': optimizer_state(model, optimizer, fsdp),
             'scaler': scaler.state_dict(), 'model_args': model_args, 'iter_num': run.iter_num,
             'best_val_loss': run.best_val_loss, 'best_val_bpb': run.best_val_bpb, 'config': config,
             'tokenizer': tokenizer, 'rng': rng_states(), 'pretrained': pretrained,
             'cpu_threads': torch.get_num_threads() if device_type == 'cpu' else None}
    if ema is not None:
        with ema.swapped_in():  # one process: state_dict() holds the live tensors, so a copy of them
            state['trained_model'], state['model'] = state['model'], {
                k: v.clone() for k, v in model_state(model, fsdp).items()}
    return state


def write_checkpoint(path, ckpt):
    """ckpt to path, replaced atomically (common.save_checkpoint); None, or why it was not."""
    if not all(v.isfinite().all() for v in ckpt['model'].values() if v.is_floating_point()):
        return (f"the weights are not finite at iter {run.iter_num}: not saved, {path} is untouched; lower "
                f"learning_rate")
    try:
        save_checkpoint(ckpt, path)
    except OSError as e:
        return (f"cannot write {path} at iter {run.iter_num} ({e.strerror}); the previous one is intact: free some "
                f"space, then resume with --init_from=resume")
    return None


def save(paths):
    """Rank 0 writes the checkpoint to each path; a failed write stops every process (none is left waiting)."""
    ckpt = checkpoint_state()
    error = next(filter(None, (write_checkpoint(p, ckpt) for p in paths)), None) if master_process else None
    if agree(error is not None, device=device)[0]:
        stop(f"error: {error}")


def evaluate_and_checkpoint():
    """Eval both splits; save last.pt (and best.pt when val improved); a non-finite eval loss stops unsaved. Returns
    the eval's metrics, which rank 0 also appends to evals.csv."""
    with ema.swapped_in() if ema is not None else contextlib.nullcontext():
        metrics = estimate_loss()
    losses = {split: m['loss'] for split, m in metrics.items()}
    if not all(math.isfinite(v) for v in losses.values()):
        stop(f"error: the eval loss is not finite at iter {run.iter_num} (train {losses['train']}, val "
             f"{losses['val']}): the model has diverged; not saved, {last_path} is untouched; lower learning_rate")
    improved = agree(master_process and losses['val'] < run.best_val_loss, device=device)[0]  # rank 0 decides
    if improved:
        run.best_val_loss, run.best_val_bpb = losses['val'], metrics['val']['bpb']
    paths = [last_path] if run.iter_num > run.start_iter or run.iter_num == max_iters else []
    if improved and run.iter_num > 0:  # also right after a resume, when the stopped run saved before its eval
        paths.append(best_path)
    if paths:
        save(paths)
    if master_process:
        seconds, wall, val = time.time() - run.t_start, time.time() - _t_launch, metrics['val']
        bar.write(f"eval {run.iter_num:>6} | train {losses['train']:.4f} | val {losses['val']:.4f} | best val "
                  f"{run.best_val_loss:.4f} | val acc {val['acc']:.4f} | val bpb {val['bpb']:.4f} | {wall:.1f} s wall")
        row = {'iter': run.iter_num, 'tokens': run.iter_num * tokens_per_iter, 'seconds': f"{seconds:.2f}",
               'wall': f"{wall:.2f}", 'lr': f"{get_lr(run.iter_num):.3e}"}
        row.update({f"{split}_{k}": f"{v:.5f}" for split, m in metrics.items() for k, v in m.items()})
        if run.iter_num not in logged_iters:  # a resumed run's first eval repeats the stopped run's last one
            append_csv(evals_path, row)
            if wandb_log:
                wandb.log({k: float(v) for k, v in row.items()}, step=run.iter_num)  # the CSV's numbers
    return metrics


def must_sync(it):
    """Reading device flags makes the CPU wait for the GPU (this step no longer overlaps the next), so it happens
    only where it must: every step for nan_policy='skip', at log lines, before evals and the end, after a signal
    (with one process: several must all decide at the same step, so theirs waits for the next log line)."""
    return (nan_policy == 'skip' or (run.signal is not None and not distributed) or (it + 1) % log_interval == 0
            or (it + 1) % eval_interval == 0 or it + 1 >= max_iters)


def skip_nonfinite(bad_iter, loss, grad_norm):
    """bad_iter: the first step with a non-finite loss or gradient since the last check, -1 if none (every process
    agrees on it). nan_policy 'stop' exits at it; 'skip' skips this step (returns True) and stops after 10 in a row."""
    if bad_iter >= 0 and nan_policy == 'stop':
        stop(f"error: non-finite loss or gradient at iter {bad_iter}: stopped, nothing saved, {last_path} is "
             f"untouched; lower learning_rate, or pass --nan_policy=skip to skip such steps")
    if bad_iter < 0:
        run.skipped_in_a_row = 0
        return False
    run.first_bad.fill_(-1)
    run.skipped, run.skipped_in_a_row = run.skipped + 1, run.skipped_in_a_row + 1
    what = f"loss {loss.item():.4g}" + ('' if grad_norm is None else f", gradient norm {grad_norm.item():.4g}")
    if run.skipped_in_a_row == 10:
        stop(f"error: 10 steps in a row with a non-finite loss or gradient, up to iter {run.iter_num} ({what}): the "
             f"model has diverged; lower learning_rate")
    if master_process:
        bar.write(f"iter {run.iter_num}: non-finite loss or gradient ({what}): step skipped, {run.skipped} so far")
    return True


def fmt_mfu(mfu):
    return 'n/a' if mfu is None else f"{100 * mfu:.1f}%"


def rate_window():
    """(steps, seconds) since the window opened (evals left out), and a new window from now on."""
    if device_type == 'cuda':
        torch.cuda.synchronize()
    steps, seconds = run.iter_num - run.log_iter, time.time() - run.t_log
    run.t_log, run.log_iter = time.time(), run.iter_num
    return steps, seconds


def log(loss, lr):
    """One line per log_interval steps: the rate over the steps since the last line (evals and the first, compiling
    step left out); MFU per device (the tokens of all processes / world_size)."""
    steps, seconds = rate_window()
    if not master_process or steps == 0:
        return
    dt = seconds / steps
    tok_s = tokens_per_iter / dt
    mfu = model.estimate_mfu(tok_s / world_size, peak)
    line = (f"iter {run.iter_num:>6} | loss {loss.item():.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | mfu {fmt_mfu(mfu)} "
            f"| {1000 * dt:.1f} ms/iter" + (f" | {run.skipped} skipped" if run.skipped else ''))
    if show_bar:
        bar.set_postfix_str(line.split(' | ', 1)[1])
    if print_lines:
        print(line, flush=True)


def plot_curves(path, png):
    """train and val loss against tokens from evals.csv, when matplotlib is installed (an optional dependency)."""
    plt = pyplot()
    if plt is None:
        return None
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for split, marker in (('train', 'o'), ('val', 's')):  # markers: a short run has only a few evals
        ax.plot([int(r['tokens']) for r in rows], [float(r[f'{split}_loss']) for r in rows], marker=marker, label=split)
    ax.set(xlabel='training tokens', ylabel='loss (nats per token)')
    ax.set_title(textwrap.fill(f"loss of {config_name} {overrides}".strip(), 70), fontsize=9)  # wrapped to fit
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def steady_rate(tokens, train_seconds):
    """Tokens/s of the run's training, evals left out and, as in the log lines, the first (compiling) step too when
    there were more."""
    if run.first_step is None or run.iter_num - run.start_iter < 2:
        return tokens / max(train_seconds - run.eval_seconds, 1e-9)
    t_first, evals_before = run.first_step
    seconds = run.t_start + train_seconds - t_first - (run.eval_seconds - evals_before)
    return (tokens - tokens_per_iter) / max(seconds, 1e-9)  # the tokens of the steps after the first


def startup_line():
    """Where the seconds from launch to the end of the first step went (called right after it, the device synced)."""
    now = time.time()
    first_step = now - run.t_start - run.eval_seconds
    return (f"started | {now - _t_launch:.1f} s from launch to the end of the first step | imports "
            f"{_t_imports - _t_launch:.1f} s | setup {run.t_start - _t_imports:.1f} s | evals {run.eval_seconds:.1f} s "
            f"| first step {first_step:.1f} s" + (" (compiles the model)" if compile else ""))


def on_signal(signum, frame):
    run.signal = signum
    if signum == signal.SIGINT and not distributed:  # a second Ctrl-C quits at once (checkpoints are atomic); torchrun
        signal.signal(signum, signal.SIG_DFL)  # passes every signal on, and schedulers send SIGTERM more than once


torch_excepthook = sys.excepthook  # under torchrun, torch's: it prefixes each line of a traceback with [rank<r>]


def on_uncaught(kind, error, tb):
    """When a process of the run dies (killed, out of memory, a crash), the next collective fails in the others
    (gloo: a RuntimeError from its transport, 'Connection closed by peer'; NCCL: a DistError). Each of them stops
    with this one line, not a traceback; torchrun names the process that failed first. Other errors keep theirs."""
    lost = isinstance(error, torch.distributed.DistError) or any(s in str(error) for s in ('by peer', 'gloo/transport'))
    if not lost:
        return torch_excepthook(kind, error, tb)
    what = str(error).split('] ', 1)[-1].split('. ', 1)[0]  # gloo: the message, without its source file
    print(f"error: another process of this run has stopped ({what}), so this one stops too; {last_path}, if there is "
          f"one, is a whole checkpoint: resume with --init_from=resume", file=sys.stderr, flush=True)


def launcher():
    """How this run was started, for the line that says how to resume it (the same number of processes)."""
    if not distributed:
        return "python"
    if world_size == local_world_size:
        return f"torchrun --standalone --nproc_per_node={world_size}"
    return f"torchrun <its options as before, on each of the {world_size // local_world_size} machines>"


def save_and_exit():
    """After a signal: save last.pt, print how to resume, exit 128 + the signal number as a shell does."""
    save([last_path])
    bar.close()
    if master_process:
        args = [a for a in sys.argv[1:] if not a.startswith('--init_from=')] + ['--init_from=resume']
        print(f"stopped at iter {run.iter_num}: saved {last_path}; resume with: {launcher()} {sys.argv[0]} "
              f"{shlex.join(args)}", flush=True)
    if distributed:
        torch.distributed.barrier()  # no process exits (and makes torchrun stop the others) before the save
    sys.exit(128 + (run.signal or signal.SIGTERM))  # 130 for SIGINT, 143 for SIGTERM


# -----------------------------------------------------------------------------
# training loop
for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, on_signal)
if distributed:
    sys.excepthook = on_uncaught
exit_code = None  # sys.exit's, when stop() or a signal ends the run: the process group is left first (below)
try:
    batches = get_step_batches()
    run.t_start = run.t_log = time.time()
    while True:
        if (run.iter_num % eval_interval == 0 and (run.iter_num > run.start_iter or eval_at_start)) \
                or run.iter_num == max_iters or eval_only:
            t_eval = time.time()
            metrics = evaluate_and_checkpoint()
            run.eval_seconds += time.time() - t_eval
            run.t_log += time.time() - t_eval  # eval time does not count against tokens/s
        if run.iter_num >= max_iters or eval_only:
            break

        lr = get_lr(run.iter_num)
        set_lr(lr)
        loss, grad_norm, nonfinite = (graphed_step if cuda_graph else train_step)(batches)  # graphed: + the optimizer
        batches = get_step_batches()  # prefetch the next step's batches while the GPU works on this one
        run.first_bad = torch.where(nonfinite & (run.first_bad < 0), run.iter_num, run.first_bad)  # no sync
        skip = stop_signal = False
        if must_sync(run.iter_num):  # one collective: every process skips, stops or saves at the same step
            bad_iter, stop_signal = agree(run.first_bad, run.signal is not None, device=device)
            skip = skip_nonfinite(bad_iter, loss, grad_norm)
        if skip and not scaler.is_enabled():  # float16: the GradScaler skips a step with non-finite gradients itself
            optimizer.zero_grad(set_to_none=True)  # no gradients: the optimizer step below changes nothing
        if not cuda_graph:  # (the graph's step holds it)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(run.iter_num)
        run.iter_num += 1
        bar.update(1)

        if run.iter_num == run.start_iter + 1:
            rate_window()  # the rate of the log lines starts after the first step (compilation, allocator warm-up)
            run.first_step = (time.time(), run.eval_seconds)
            if master_process:
                bar.write(startup_line())
        elif run.iter_num % log_interval == 0:
            log(loss, lr)
        if stop_signal:
            save_and_exit()
    bar.close()
    train_seconds = time.time() - run.t_start
    # CUDA: the peak of memory allocated on any one device (the largest over the processes: a collective), in MiB
    peak_mib = agree(torch.cuda.max_memory_allocated(device) // 2**20, device=device)[0] \
        if device_type == 'cuda' else None

    if master_process and not eval_only:
        n_params = model.get_num_params(non_embedding=False)
        tokens = (run.iter_num - run.start_iter) * tokens_per_iter
        print(f"done {run.iter_num} iters | best val {run.best_val_loss:.4f} | {train_seconds:.1f} s training "
              f"| {n_params:,} params | {tokens:,} tokens | checkpoints in {out_dir}"
              + (f" | peak memory {peak_mib:,} MiB per device" if peak_mib is not None else '')
              + (f" | {run.skipped} steps skipped (non-finite)" if run.skipped else ''))
        # the figures at the end of the budget (which nothing was selected on) beside the best-on-val ones
        append_csv(os.path.join(out_dir, 'results.csv'), {
            'date': time.strftime('%Y-%m-%d %H:%M:%S'), 'config': config_name, 'overrides': overrides,
            'params': n_params, 'iters': run.iter_num, 'tokens': tokens, 'best_val_loss': f"{run.best_val_loss:.4f}",
            'train_seconds': f"{train_seconds:.1f}", 'device': device_name, 'best_val_bpb': f"{run.best_val_bpb:.4f}",
            'val_loss': f"{metrics['val']['loss']:.4f}", 'val_acc': f"{metrics['val']['acc']:.4f}",
            'val_bpb': f"{metrics['val']['bpb']:.4f}",
            'tokens_per_sec': f"{steady_rate(tokens, train_seconds):.0f}"})
        png = plot_curves(evals_path, os.path.join(out_dir, 'loss.png'))
        print(f"loss curves: {png}" if png else "loss curves: not drawn, matplotlib is not installed (pip install "
              "matplotlib)")
    if wandb_log and master_process:
        wandb.finish()
except SystemExit as e:  # stop()'s error line, or a signal's save: leave the process group first, as the end does
    exit_code = e.code
if distributed:  # free what holds the process group (DDP, FSDP's shards and their optimizer state), then leave it:
    del train_model, model, optimizer, ema  # left to python's exit, gloo's threads could abort
    gc.collect()  # a finished run ('terminate called without an active exception')
    destroy_process_group()
if exit_code is not None:
    sys.exit(exit_code)
