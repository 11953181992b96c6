"""
Re-measure, on this machine, the GPU figures that docs/benchmarks.md states in its "As shipped" table and in its
Results table, nanoGPT's beside ours in the same run where a figure compares, and print that table. One GPU; on an
H100 --only=step took 91 s, --only=fast,default 225 s, --only=baby 139 s and --only=best --seeds=1 110 s (on a
machine that had run before; a machine that allows 10 minutes a command: one part or two at a time).

    python figures.py --nanogpt=../nanoGPT            # a checkout of karpathy/nanoGPT: its bench.py and baby GPT
    python figures.py --only=default --seeds=1        # some of the figures, ours only

step     the GPT-2 124M training step (bench.py: random tokens, bf16, compiled), batch 12 and 32 x 1024: nanoGPT's
         (AdamW), ours with our defaults (Muon) and with optim='adamw' (bench.py --compare, one process), then both
         again with the opt-in float8 output layer (fp8_head=True); tokens/s against nanoGPT's, and Muon's share of
         our default step
fast     seconds from launch to the first val <= 1.47 on char-level tiny shakespeare: nanoGPT's baby GPT
         (config/train_shakespeare_char.py) and config/shakespeare_char_fast.py for seeds 1..seeds, cold and warm each
default  `python train.py`, the default config: launch to done, ms/iter at the end, best val; cold, then warm
baby     nanoGPT's baby GPT (config/train_shakespeare_char.py) in our train.py: best val and when; then, on the model it
         trained, bench.py's training step (ms/iter, tokens/s, MFU), sampling (the batching and KV-cache gains) and
         int8 weights (size, val loss, sampling speed)
best     config/shakespeare_char_best.py for seeds 1..seeds, cold and warm each: the lowest val within `within`
         seconds of launch (115)
cold: empty caches (a fresh TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR and PYTHONPYCACHEPREFIX for the run: compiled
kernels, and Python's bytecode, which a pip install writes but some machine images lack); warm: the caches that the
same program's first cold run filled (the environment's, when caches has no cold). Seconds are this script's clock
from the launch of each process: imports included.
"""
import atexit
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from configurator import configure

# -----------------------------------------------------------------------------
nanogpt = ''  # a checkout of karpathy/nanoGPT, run beside ours ('' = our figures only)
only = 'step,fast,default,baby,best'  # which figures, comma-separated
seeds = 3  # runs of the fast and best configs, cold and warm each
target = 1.47  # the val loss the fast figures time
within = 115  # the seconds from launch in which the best figure takes its lowest val
caches = 'cold,warm'  # the runs of the fast, default and best figures: with empty compile caches, then with warm ones
args = ''  # more train.py overrides for our runs (a quick check: '--max_iters=20'); the figures of the docs use none
bench_args = ''  # more bench.py overrides for the step and baby parts (a quick check: '--steps=2'); likewise
# -----------------------------------------------------------------------------
configure(globals())
parts = set(only.split(','))
states = caches.split(',')
if not parts <= {'step', 'fast', 'default', 'baby', 'best'} or not set(states) <= {'cold', 'warm'}:
    sys.exit(f"error: only takes step, fast, default, baby and best, and caches cold and warm; got '{only}' and "
             f"'{caches}'")
if nanogpt and not os.path.isfile(os.path.join(nanogpt, 'bench.py')):
    sys.exit(f"error: --nanogpt={nanogpt} holds no bench.py: give a checkout of karpathy/nanoGPT")
GPT2 = ['--n_layer=12', '--n_head=12', '--n_embd=768', '--block_size=1024', '--vocab_size=50304', '--bias=False',
        '--dropout=0.0']
rows = []  # the table: (what, nanoGPT, ours, ratio or note)


def run(args, cwd='.', cache=None, until=None):
    """Run python with args; return its output lines, each with the seconds since launch, and the seconds it took.
    cache: the compile caches' folder (None: the environment's). until(line): stop the process at the first line for
    which it is true."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if cache:  # compiled kernels, and Python's bytecode (a pip install has it; some images keep none)
        env.update(TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=os.path.join(cache, 'triton'),
                   PYTHONPYCACHEPREFIX=os.path.join(cache, 'bytecode'))
        env.pop('PYTHONDONTWRITEBYTECODE', None)
    t0 = time.time()
    p = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    lines = []
    for line in p.stdout:
        lines.append((time.time() - t0, line.rstrip()))
        if until is not None and until(line):
            p.kill()
            break
    p.wait()
    if p.returncode not in (0, -9):
        print('\n'.join(line for _, line in lines[-10:]))
        sys.exit(f"error: python {' '.join(args)} (in {cwd}) exited with {p.returncode}")
    return lines, time.time() - t0


made = []  # the folders made here, removed at exit: each cold run's empty compile caches, the baby out_dir
atexit.register(lambda: [shutil.rmtree(cache, ignore_errors=True) for cache in made])
filled = {}  # program -> the caches its first cold run filled: its warm runs read them


def caches_for(program, state):
    """The compile caches for a run of program: cold, a new empty folder; warm, the folder that program's first cold
    run filled, or the environment's (None) when it had no cold run."""
    if state == 'warm':
        return filled.get(program)
    made.append(tempfile.mkdtemp(prefix='figures-cache-'))
    filled.setdefault(program, made[-1])
    return made[-1]


def matches(lines, pattern):
    """(seconds, groups) of each of run()'s lines that pattern matches."""
    return [(t, m.groups()) for t, line in lines for m in [re.search(pattern, line)] if m]


def numbers(lines, pattern):
    return [(t, *map(float, groups)) for t, groups in matches(lines, pattern)]


def last(lines, pattern):
    """The groups (strings, as printed) of pattern's last match in lines, or exit showing the output that lacks it."""
    found = matches(lines, pattern)
    if not found:
        print('\n'.join(line for _, line in lines[-10:]))
        sys.exit(f"error: no line matching {pattern!r} in the output above")
    return found[-1][1]


def row(*cells):
    rows.append(cells)
    print('figure | ' + ' | '.join(cells), flush=True)


def train(train_args, cache, until=None, out=None):
    """Our train.py with train_args (and --args): run()'s lines and seconds. out: its out_dir (None: a fresh one,
    removed after)."""
    out_dir = out or tempfile.mkdtemp(prefix='figures-out-')
    try:
        return run(['train.py', *train_args, f'--out_dir={out_dir}', *shlex.split(args)], cache=cache, until=until)
    finally:
        if out is None:
            shutil.rmtree(out_dir, ignore_errors=True)


def bench(bench_argv):
    """Our bench.py with bench_argv (and --bench_args): its output lines."""
    return run(['bench.py', *bench_argv, *shlex.split(bench_args)])[0]


def spread(values, fmt):
    return fmt.format(values[0]) if len(values) == 1 else \
        f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


OURS_VAL = r'^eval +(\d+) \| train [\d.]+ \| val ([\d.]+)'  # our train.py's eval lines: iter, val


print(f"figures | {' '.join(sys.argv[1:])}", flush=True)
if shutil.which('nvidia-smi'):
    subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'])

if 'step' in parts:
    for batch in (12, 32):
        nano = None
        if nanogpt:
            lines, _ = run(['bench.py', '--real_data=False', '--compile=True', f'--batch_size={batch}'], cwd=nanogpt)
            nano = float(last(lines, r'time per iteration: ([\d.]+)ms')[0])
        for fp8, also in (([], ''), (['--fp8_head=True'], ', fp8_head=True')):  # as shipped, then the opt-in fp8 head
            lines = bench([*GPT2, f'--batch_size={batch}', *fp8, '--compare=--optim=adamw'])
            ours, adamw = (ms for _, ms in numbers(lines, r'^train \|.* \| ([\d.]+) ms/iter')[-2:])  # A, then B
            for name, ms in ((f'our defaults (Muon){also}', ours), (f"optim='adamw'{also}", adamw)):
                row(f"GPT-2 124M step, batch {batch} x 1024, {name}", f"{nano:.2f} ms" if nano else '-',
                    f"{ms:.2f} ms", f"{nano / ms:.3f}x" if nano else '-')
            if not fp8:
                row(f"Muon's share of our default step, batch {batch}", '-', f"{ours - adamw:.2f} ms",
                    f"{100 * (ours - adamw) / ours:.2f}%")

if parts & {'fast', 'default', 'baby', 'best'}:
    run(['data/shakespeare_char/prepare.py'])

if 'fast' in parts:
    nano = {}  # cold / warm: nanoGPT's seconds to the target

    def reached(pattern):
        return lambda line: any(v <= target for *_, v in numbers([(0, line)], pattern))
    nano_val = r'step (\d+): train loss [\d.]+, val loss ([\d.]+)'
    if nanogpt:
        here, there = 'data/shakespeare_char/input.txt', os.path.join(nanogpt, 'data/shakespeare_char/input.txt')
        if os.path.exists(here) and not os.path.exists(there):
            shutil.copy(here, there)  # nanoGPT's prepare.py downloads it otherwise
        run(['data/shakespeare_char/prepare.py'], cwd=nanogpt)
    for state in states if nanogpt else []:
        lines, _ = run(['train.py', 'config/train_shakespeare_char.py', '--max_iters=2500'], cwd=nanogpt,
                       cache=caches_for('nanoGPT', state), until=reached(nano_val))
        evals = numbers(lines, nano_val)  # (seconds, iter, val)
        hits = [e for e in evals if e[2] <= target]
        if hits:
            nano[state] = hits[0][0]
        else:  # what it printed last, to see why
            print('\n'.join(f"nanoGPT | {line}" for _, line in lines[-5:]), flush=True)
        t, it, v = hits[0] if hits else min(evals, key=lambda e: e[2], default=(0, 0, float('nan')))
        row(f"nanoGPT's baby GPT: launch to val <= {target}, {state}", f"{t:.1f} s (val {v:.4f} at iter {it:.0f})"
            if hits else f"not reached (best val {v:.4f} at iter {it:.0f}, {t:.1f} s)", '-', '-')
    for state in states:
        seconds, vals = [], []
        for seed in range(1, seeds + 1):
            lines, _ = train(['config/shakespeare_char_fast.py', f'--seed={seed}'], caches_for('fast', state),
                             until=reached(OURS_VAL))
            evals = numbers(lines, OURS_VAL)  # (seconds, iter, val)
            hits = [(t, v) for t, _, v in evals if v <= target]
            seconds.append(hits[0][0] if hits else float('inf'))
            vals.append(hits[0][1] if hits else min((v for *_, v in evals), default=float('nan')))  # else its best
        missed = sum(s == float('inf') for s in seconds)
        ours = f"not reached by {missed} of {seeds} seeds (best vals {', '.join(f'{v:.4f}' for v in vals)})" \
            if missed else f"{spread(seconds, '{:.1f}')} s (val {spread(vals, '{:.4f}')})"
        theirs = nano.get(state)
        row(f"fast config: launch to val <= {target}, {state}, seeds 1-{seeds} "
            f"({', '.join(f'{s:.1f}' for s in seconds)} s)", f"{theirs:.1f} s" if theirs else '-', ours,
            f"{theirs / statistics.mean(seconds):.2f}x" if theirs and not missed else '-')

if 'baby' in parts:
    baby = 'config/train_shakespeare_char.py'
    out = tempfile.mkdtemp(prefix='figures-out-')
    made.append(out)
    lines, seconds = train([baby], None, out=out)  # the environment's compile caches
    t, it, v = min(numbers(lines, OURS_VAL), key=lambda e: e[2])
    iters, = last(lines, r'^done (\d+) iters')
    row(f"nanoGPT's baby GPT (`{baby}`) in our train.py, {iters} iters", '-',
        f"best val {v:.4f} at iter {it:.0f}, {t:.1f} s from launch", f"{seconds:.1f} s launch to done")
    ms, tok_s, mfu = last(bench([baby]), r'^train \|.* \| ([\d.]+) ms/iter \| ([\d,]+) tok/s \| mfu ([\d.]+%|n/a)')
    row("its training step (bench.py)", '-', f"{ms} ms/iter, {tok_s} tok/s", f"MFU {mfu}")
    batching, kv = last(bench([baby, '--bench=sample', f'--out_dir={out}']), r'^sample \|.* batching ([\d.]+)x .*'
                        r'\| KV cache ([\d.]+)x')
    row("sampling from its checkpoint (bench.py --bench=sample)", '-', f"batching {batching}x, KV cache {kv}x", '-')
    lines = bench([baby, '--bench=int8', f'--out_dir={out}'])
    smaller, = last(lines, r'^int8 \|.* \(([\d.]+)x smaller\)')
    nats, = last(lines, r'^int8 \| val loss .* \(([-+][\d.]+) nats\)')
    speed, = last(lines, r'^int8 \| sample .* \(([\d.]+)x\)$')
    row("int8 weights of its checkpoint (bench.py --bench=int8)", '-', f"state dict {smaller}x smaller, val loss "
        f"{nats} nats", f"sampling {speed}x float's tokens/s")

if 'best' in parts:
    for state in states:
        times, vals = [], []
        for seed in range(1, seeds + 1):
            lines, _ = train(['config/shakespeare_char_best.py', f'--seed={seed}'], caches_for('best', state))
            evals = [(t, v) for t, _, v in numbers(lines, OURS_VAL) if t <= within]
            t, v = min(evals, key=lambda e: e[1], default=(float('nan'), float('nan')))
            times.append(t)
            vals.append(v)
        row(f"best config: lowest val within {within} s of launch, {state}, seeds 1-{seeds} "
            f"({', '.join(f'{v:.4f}' for v in vals)})", '-', f"{spread(vals, '{:.4f}')} at {spread(times, '{:.1f}')} s",
            f"no eval within {within} s" if any(math.isnan(v) for v in vals) else '-')

if 'default' in parts:
    for state in states:
        lines, seconds = train([], caches_for('default', state))
        ms, = last(lines, r'([\d.]+) ms/iter')
        best, = last(lines, r'^done \d+ iters \| best val ([\d.]+)')
        row(f"`python train.py` (default config), {state}", '-', f"{seconds:.1f} s launch to done, "
            f"{float(ms):.1f} ms/iter", f"best val {float(best):.4f}")
print("\n| figure | nanoGPT | ours | ratio / note |\n| --- | --- | --- | --- |")
for cells in rows:
    print('| ' + ' | '.join(cells) + ' |')
