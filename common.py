"""
The chores train.py, sample.py, bench.py, export.py and ladder.py share, each in one place: the device and dtype,
the GPUs' peak FLOP/s (for MFU), checkpoints (save, load, find), appending to a CSV file, the matplotlib guard, and
a script's way of failing (one line, 'error: ...'). The model is in model.py, the optimizers in optim.py.
"""
import csv
import functools
import glob
import os
import re
import sys
import time
from contextlib import nullcontext
from typing import NamedTuple

import torch

from data.common import atomic_file


def or_exit(fn, *args, **kwargs):
    """fn(*args, **kwargs); a ValueError it raises ends the script with its message as one line, 'error: ...'."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        sys.exit(f"error: {e}")


# ----------------------------------------------------------------------------- checkpoints and files
def save_checkpoint(obj, path):
    """torch.save, atomically (data.common.atomic_file): a crash or a failed write at any point leaves the previous
    file whole, and no temporary file behind."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def load_checkpoint(path):
    """A checkpoint written by save_checkpoint, loaded with weights_only=True: tensors and plain python values only,
    so a downloaded file cannot run code. A truncated, corrupt or unsafe file is a ValueError saying so, which also
    names the other checkpoints beside it (a good best.pt after a damaged last.pt, say)."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # EOFError, RuntimeError (zip), OSError, UnpicklingError, KeyError, ...: torch says which
        folder, name = os.path.split(os.path.abspath(path))
        others = sorted(f for f in os.listdir(folder) if f.endswith('.pt') and f != name)
        if 'Unsupported global' in str(e):  # weights_only refused to import a class or function
            why = "it holds python objects other than tensors and plain values, which could run code; refused"
        else:
            why = f"truncated or corrupt: torch.load raised {type(e).__name__}"
        hint = f"; other checkpoints beside it: {', '.join(others)}" if others else ""
        raise ValueError(f"{path} is not a readable checkpoint ({why}){hint}") from None
    if not isinstance(ckpt, dict) or not {'model', 'model_args'} <= ckpt.keys():
        raise ValueError(f"{path} is not a mini-GPT checkpoint (no 'model' and 'model_args' entries)")
    return ckpt


def find_checkpoint(out_dir, ckpt):
    """The checkpoint a script reads (sample.py, export.py, bench.py): out_dir's {ckpt}.pt for ckpt 'best' or 'last',
    else ckpt itself, a path to a file. A ValueError when there is none: it names the out*/ folders here (and one
    below, as out-ladder/08_residual) that hold a {ckpt}.pt, or else says how to train one."""
    if ckpt not in ('best', 'last'):
        if not os.path.isfile(ckpt):
            raise ValueError(f"--ckpt={ckpt} is not 'best', 'last' or a path to a checkpoint file")
        return ckpt
    path = os.path.join(out_dir, f'{ckpt}.pt')
    if os.path.isfile(path):
        return path
    found = sorted(os.path.dirname(p) for p in glob.glob(f'out*/{ckpt}.pt') + glob.glob(f'out*/*/{ckpt}.pt'))
    if found:
        raise ValueError(f"no checkpoint at {path}; these hold a {ckpt}.pt: {', '.join(found)} (pass one with "
                         f"--out_dir=...)")
    train = 'python train.py' + ('' if out_dir == 'out' else f' --out_dir={out_dir}')
    raise ValueError(f"no checkpoint at {path}, nor in any out*/ directory here; train one first ({train}) or name "
                     f"one with --ckpt=PATH")


def append_csv(path, row):
    """Append a row (a dict) to a CSV file. A file with other columns (an older version's) is rewritten with this
    row's header first: its rows keep their values, new columns stay empty for them."""
    old = []
    if os.path.exists(path):
        with open(path, newline='') as f:
            reader = csv.DictReader(f)
            if reader.fieldnames == list(row):
                with open(path, 'a', newline='') as out:
                    csv.DictWriter(out, fieldnames=list(row)).writerow(row)
                return
            old = list(reader)
    with atomic_file(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(row), extrasaction='ignore')
        w.writeheader()
        w.writerows(old + [row])


def pyplot():
    """matplotlib.pyplot drawing to files (no screen needed), or None when matplotlib (optional) is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


# ----------------------------------------------------------------------------- devices
# dense tensor-core peak FLOP/s from NVIDIA's datasheets (their sparsity figures halved): (a part of the name
# torch.cuda.get_device_name() gives, bf16 / fp16, tf32). Matched in this order: NVL and PCIe before the SXM parts.
PEAK_FLOPS = [
    ('H100 NVL', 835e12, 418e12),
    ('H100 PCIe', 756e12, 378e12),
    ('H100', 989e12, 495e12),
    ('H200 NVL', 835e12, 418e12),
    ('H200', 989e12, 495e12),
    ('A100', 312e12, 156e12),
]


def peak_flops(device_name, dtype):
    """The device's dense peak for matmuls in dtype ('float32' runs on TF32 tensor cores: device_setup enables
    them); None for devices not in PEAK_FLOPS (CPUs among them)."""
    for key, half, tf32 in PEAK_FLOPS:
        if key in device_name:
            return tf32 if dtype == 'float32' else half
    return None


COMPILE_FLOPS = 3e15  # a run of fewer training FLOPs loses more to compiling (~25 s cold, one H100) than it wins: the
# fast config (1.05e15 at 900 steps) reached its val 20 s later compiled than not, cold; nanoGPT's baby GPT (5.8e15)
# wins ~50 s


def compile_on(compile, device_type, run_flops=None):
    """The compile key: True or False, or None for on CUDA only (and, given the run's training FLOPs, only for a run of
    COMPILE_FLOPS or more); anything else is a ValueError."""
    if compile not in (None, True, False):
        raise ValueError(f"compile={compile!r} (True, False, or None: on CUDA for a run long enough to win it back)")
    if compile is None:
        return device_type == 'cuda' and (run_flops is None or run_flops >= COMPILE_FLOPS)
    return compile


def compile_model(model, mode):
    """torch.compile(model) in the compile_mode key's mode: inductor's 'default', 'reduce-overhead' (its kernels
    replayed as CUDA graphs), 'max-autotune', ...; or 'cudagraphs': no inductor, PyTorch's own kernels replayed as CUDA
    graphs, which compiles in about a second rather than tens (a small model's short run)."""
    return torch.compile(model, backend='cudagraphs') if mode == 'cudagraphs' else torch.compile(model, mode=mode)


class System(NamedTuple):
    device: str  # 'cpu', 'cuda', 'cuda:1', 'mps'
    device_type: str  # 'cpu', 'cuda' or 'mps'
    dtype: str  # 'float32', 'bfloat16' or 'float16'
    ctx: object  # the autocast context for forward passes (a no-op in float32)
    name: str  # torch.cuda.get_device_name() on CUDA, else the device type


def device_setup(device=None, dtype=None):
    """The one rule of train.py, sample.py and bench.py. device None: cuda, then mps, then cpu. dtype None: bfloat16
    on CUDA where supported, else float16 (train.py adds a GradScaler); float32 elsewhere. float32 matmuls on CUDA
    use TF32 tensor cores. A device that is not one of these or not here, or another dtype, is a ValueError. On the
    CPU, the number of threads follows cpu_threads()."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    device_type = device.split(':')[0]
    if not re.fullmatch(r'cpu|mps|cuda(:\d+)?', device):
        raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got '{device}'")
    if device_type == 'cuda' and not torch.cuda.is_available():
        why = "this PyTorch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"device '{device}' is not available: {why}; use --device=cpu")
    if device_type == 'cuda' and device != 'cuda' and int(device[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device '{device}' is not available: {torch.cuda.device_count()} CUDA GPUs here")
    if device_type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available here (Apple silicon only); use --device=cpu")
    if dtype is None:
        dtype = ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16') if device_type == 'cuda' else 'float32'
    ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(dtype)
    if ptdtype is None:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got '{dtype}'")
    if device_type == 'cpu':
        torch.set_num_threads(cpu_threads())
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=ptdtype)
    name = torch.cuda.get_device_name(device) if device_type == 'cuda' else device_type
    return System(device, device_type, dtype, ctx, name)


def busy_cores(seconds=0.2):
    """How many of this machine's cores other programs keep busy now: the CPU time the whole machine spent over
    `seconds` (from /proc/stat, while this process waits), in cores; the 1-minute load average where there is no
    /proc/stat (macOS)."""
    def ticks():
        with open('/proc/stat') as f:
            values = [int(v) for v in f.readline().split()[1:]]  # user nice system idle iowait irq softirq steal ...
        return sum(values) - values[3] - values[4], sum(values)  # busy, all
    try:
        busy0, all0 = ticks()
        time.sleep(seconds)
        busy1, all1 = ticks()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0
    return (busy1 - busy0) / max(1, all1 - all0) * os.cpu_count()


@functools.cache  # once a process: the same threads for every model it builds, and one look at the machine
def cpu_threads():
    """PyTorch's threads on the CPU: OMP_NUM_THREADS when it is set; else the cores that this process may use and no
    other program keeps busy, at least 1. PyTorch's default takes every core, and when another program runs on
    them its threads wait for each other: on 2 cores with a second training run, 3-13x slower than one thread
    (docs/benchmarks.md)."""
    if os.environ.get('OMP_NUM_THREADS'):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads(), round(cores - busy_cores())))
