"""
Train the ladder: each rung of config/ladder/ (and the side branches in config/ladder/side/) with several seeds and
one token budget, several train.py processes at once, then a table of the mean ± std over seeds.

    python ladder.py                                      # every rung, 3 seeds, 4,096,000 tokens each (a GPU)
    python ladder.py --quick                              # CPU-sized: rungs 01-12 and names_*, 3 seeds, fewer tokens
    python ladder.py --rungs=08_residual,side/lr_1e-4 --seeds=5
    python ladder.py --args='--compile=False'             # more train.py overrides, given to every run

A run is `python train.py config/ladder/<rung>.py --seed=S --max_iters=... --out_dir=<out>/<rung>/seed<S>`, its
output in train.log there. Every finished run adds a row to <out>/results.csv, and a later call skips the (rung,
seed) pairs already there: an interrupted ladder resumes (a run cut off starts over), more seeds train only the new
ones. The table goes to <out>/ladder.md (and is printed); bpb.png and curves.png too when matplotlib is installed.
"""
import csv
import math
import os
import shlex
import statistics
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor, as_completed
from queue import Queue

from tqdm import tqdm

from common import pyplot
from configurator import ConfigError, configure, parse_config, read_settings, split_args
from data.common import dataset_error

# -----------------------------------------------------------------------------
rungs = ''  # comma list of config names under config/ladder/ ('08_residual,side/lr_1e-4'); '' = all of them,
# side branches included (quick: rungs 01-12 and names_* only: the BPE rungs 13-20 train ~50x fewer tokens/s on a CPU)
seeds = 3  # seeds 1..seeds of each rung
tokens = None  # training tokens of every run, the same for every rung: max_iters = tokens // tokens per step. None:
# 4,096,000, the 2,000 steps of 32 x 64 tokens that the rung files set, so a rung trains as train.py trains its file
# (~4 epochs of tiny shakespeare's characters); quick: 200,000
evals = None  # evals per run (eval_interval = max_iters // evals), besides the one at step 0; None: 8 (quick: 4)
eval_iters = None  # batches per split in each eval; None: the rung's (20; quick: 4)
quick = False  # a CPU-sized ladder: ~10 minutes on 2 cores (see rungs, tokens, evals, eval_iters)
procs = None  # train.py processes at once; None: 4 per GPU on CUDA (spread over the GPUs), else one per CPU core
device = None  # given to train.py; None: train.py's choice (cuda, then mps, then cpu)
args = ''  # more train.py overrides for every run, e.g. '--compile=False --dtype=float32'
out = None  # None: out-ladder-runs (quick: out-ladder-runs-quick, so the two budgets never mix)
curves = '01_bigram,03_attention,08_residual,11_pre_ln,13_gpt2_bpe,20_llama'  # the rungs of curves.png
grad_norm_rungs = '07_four_blocks,08_residual'  # runs that log each block's gradient norm (grad_norms.png)
# -----------------------------------------------------------------------------
if any(a in ('-h', '--help') for a in sys.argv[1:]):
    print(__doc__.strip() + '\n')  # then the keys, from configure()
configure(globals())
tokens = int(tokens or (200_000 if quick else 4_096_000))
evals = evals or (4 if quick else 8)
eval_iters = eval_iters or (4 if quick else None)
out = out or ('out-ladder-runs-quick' if quick else 'out-ladder-runs')
here = os.path.dirname(os.path.abspath(__file__))
ladder_dir = os.path.join(here, 'config', 'ladder')
COLUMNS = ['rung', 'seed', 'params', 'tokens', 'val_loss', 'val_acc', 'val_bpb', 'best_val_loss', 'best_val_bpb',
           'tokens_per_sec', 'seconds', 'device']


def all_rungs():
    """config/ladder/*.py then config/ladder/side/*.py, as names: '08_residual', 'side/lr_1e-4'."""
    names = sorted(f[:-3] for f in os.listdir(ladder_dir) if f.endswith('.py'))
    side = os.path.join(ladder_dir, 'side')
    return names + sorted('side/' + f[:-3] for f in os.listdir(side) if f.endswith('.py'))


def rung_settings(rung, extra):
    """A rung's settings exactly as train.py will see them: train.py's defaults, the rung's file, the --args."""
    ns = parse_config(train_defaults, [os.path.join(ladder_dir, rung + '.py'), *extra])
    ns['tokens_per_step'] = ns['gradient_accumulation_steps'] * ns['batch_size'] * ns['block_size']
    return ns


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def append_row(path, row):
    new = not os.path.exists(path)
    with open(path, 'a', newline='') as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)


def run_dir(rung, seed):
    return os.path.join(out, rung, f'seed{seed}')


def train(rung, seed, slot):
    """One run of train.py; stdout to train.log in its out_dir. Returns (rung, seed, exit code, stderr)."""
    d = run_dir(rung, seed)
    os.makedirs(d, exist_ok=True)
    cfg = settings[rung]
    max_iters = tokens // cfg['tokens_per_step']
    cmd = [sys.executable, os.path.join(here, 'train.py'), os.path.join(ladder_dir, rung + '.py'), f'--seed={seed}',
           f'--max_iters={max_iters}', f'--eval_interval={max(1, max_iters // evals)}', f'--out_dir={d}',
           '--overwrite=True']  # a run that was cut off starts over
    cmd += [f'--eval_iters={eval_iters}'] * (eval_iters is not None) + [f'--device={device}'] * (device is not None)
    cmd += ['--grad_norms=True'] * (rung in grad_norm_rungs.split(','))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    if gpus:
        env['CUDA_VISIBLE_DEVICES'] = gpus[slot % len(gpus)]
    with open(os.path.join(d, 'train.log'), 'w') as log:
        log.write(shlex.join(cmd + extra) + '\n')
        log.flush()
        p = subprocess.run(cmd + extra, stdout=log, stderr=subprocess.PIPE, text=True, env=env)
        log.write(p.stderr)
    return rung, seed, p.returncode, p.stderr


def work(rung, seed):
    """train() on a free slot (a slot is one of the procs places; slot i runs on GPU i % len(gpus))."""
    slot = slots.get()
    try:
        return train(rung, seed, slot)
    finally:
        slots.put(slot)


def mean_std(values):
    """Mean and sample standard deviation (n - 1); the std is nan for one value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def fmt(values, digits):
    mean, std = mean_std(values)
    return f"{mean:,.{digits}f} ± " + ('n/a' if math.isnan(std) else f"{std:,.{digits}f}")


def table(rows):
    """The markdown table of the runs in rows, a line per rung in the order of the rungs key."""
    lines = [f"Mean ± std over seeds (sample std, n - 1); {tokens:,} training tokens per run (rounded down to",
             "whole steps). end: at the end of the budget; best-on-val: at the eval of the lowest val loss.",
             "", "| rung | dataset | seeds | params | val bpb (end) | best-on-val bpb | val acc | tokens/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rung in selected:
        runs = [r for r in rows if r['rung'] == rung]
        if not runs:
            continue
        col = lambda key: [float(r[key]) for r in runs]  # noqa: E731
        params = sorted({int(r['params']) for r in runs})
        lines.append(f"| `{rung}` | {settings[rung]['dataset']} | {len(runs)} | {'/'.join(f'{p:,}' for p in params)} "
                     f"| {fmt(col('val_bpb'), 4)} | {fmt(col('best_val_bpb'), 4)} | {fmt(col('val_acc'), 4)} "
                     f"| {fmt(col('tokens_per_sec'), 0)} |")
    return '\n'.join(lines) + '\n'


def mean_curve(rung, seeds_done):
    """(tokens, mean val bpb) at the evals that every seed's evals.csv of the rung has."""
    curves = [{int(r['tokens']): float(r['val_bpb']) for r in read_csv(os.path.join(run_dir(rung, s), 'evals.csv'))}
              for s in seeds_done]
    xs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return xs, [statistics.mean(c[x] for c in curves) for x in xs]


def plot(rows):
    """bpb.png (val bpb per rung, mean ± std) and curves.png (mean val bpb vs tokens of the curves rungs), when
    matplotlib is installed (an optional dependency). Returns the files written."""
    plt = pyplot()
    if plt is None:
        return []
    names = [r for r in selected if any(row['rung'] == r for row in rows)]
    stats = {key: [mean_std([float(row[key]) for row in rows if row['rung'] == r]) for r in names]
             for key in ('val_bpb', 'best_val_bpb')}
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) + 2), 4.5))
    for key, label, marker, dx in (('val_bpb', 'end of the budget', 'o', 0), ('best_val_bpb', 'best-on-val', 'x', .2)):
        ax.errorbar([i + dx for i in range(len(names))], [m for m, _ in stats[key]],
                    yerr=[0 if math.isnan(s) else s for _, s in stats[key]], fmt=marker, capsize=3, label=label)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
    ax.set(ylabel='val bits per byte', title=f'mean ± std over seeds, {tokens:,} tokens per run')
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'bpb.png'), dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 5))
    shown = [r for r in curves.split(',') if r in names]
    for rung in shown:
        xs, ys = mean_curve(rung, [int(row['seed']) for row in rows if row['rung'] == rung])
        ax.plot(xs, ys, marker='.', label=rung)
    ax.set(xlabel='training tokens', ylabel='val bits per byte (mean over seeds)',
           title='val curves of the --curves rungs')
    ax.legend(fontsize=8)
    left = [r for r in names if r not in shown]  # ran, but not in --curves: said, not dropped in silence
    missing = [r for r in curves.split(',') if r and r not in names]
    note = (f"not shown (in bpb.png; --curves to choose): {', '.join(left)}" if left else '') + \
        (f"{'; ' if left else ''}not run: {', '.join(missing)}" if missing else '')
    if note:
        fig.text(0.01, 0.01, textwrap.fill(note, 110), fontsize=6, va='bottom')
    fig.tight_layout(rect=(0, 0.08 if note else 0, 1, 1))
    fig.savefig(os.path.join(out, 'curves.png'), dpi=100)
    plt.close(fig)
    written = [os.path.join(out, 'bpb.png'), os.path.join(out, 'curves.png')]
    logged = [r for r in grad_norm_rungs.split(',')
              if r in names and read_csv(os.path.join(run_dir(r, 1), 'grad_norms.csv'))]
    if logged:  # each block's gradient norm through training, seed 1: does the gradient reach the first blocks?
        fig, axes = plt.subplots(1, len(logged), figsize=(5 * len(logged), 4), sharey=True, squeeze=False)
        for ax, rung in zip(axes[0], logged):
            log = read_csv(os.path.join(run_dir(rung, 1), 'grad_norms.csv'))
            for part in [k for k in log[0] if k.startswith('block_')]:
                ax.plot([int(r['iter']) for r in log], [float(r[part]) for r in log], label=part.replace('_', ' '))
            ax.set(yscale='log', xlabel='step', title=rung)
        axes[0][0].set_ylabel('gradient norm (before clipping)')
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, 'grad_norms.png'), dpi=100)
        plt.close(fig)
        written.append(os.path.join(out, 'grad_norms.png'))
    return written


# ----------------------------------------------------------------------------- setup: what to run
known = all_rungs()
selected = [r.strip() for r in rungs.split(',') if r.strip()] if rungs else \
    [r for r in known if not quick or r[:2].isdigit() and int(r[:2]) <= 12 or r.startswith('names_')]
unknown = [r for r in selected if r not in known]
if unknown:
    sys.exit(f"error: no such rung: {', '.join(unknown)} (rungs: {', '.join(known)})")
if seeds < 1 or evals < 1:
    sys.exit(f"error: seeds and evals must be >= 1, got seeds={seeds}, evals={evals}")
extra = shlex.split(args)
train_defaults = read_settings(os.path.join(here, 'train.py'))
taken = sorted({'seed', 'max_iters', 'eval_interval', 'eval_iters', 'out_dir', 'device'}
               & {k for k, _ in split_args(train_defaults, extra)[1]})
if taken:
    sys.exit(f"error: --args sets {', '.join(taken)}, which ladder.py sets itself: use --seeds, --tokens, --evals, "
             f"--eval_iters, --out, --device")
try:
    settings = {r: rung_settings(r, extra) for r in selected}
except ConfigError as e:
    sys.exit(f"error: {e}")
short = [f"{r} ({s['tokens_per_step']:,})" for r, s in settings.items() if tokens < s['tokens_per_step']]
if short:
    sys.exit(f"error: --tokens={tokens:,} is less than one step of {', '.join(short)} tokens")

# every dataset prepared, or the commands that prepare them
missing = {}
for r, s in settings.items():
    path = os.path.join(s['data_dir'], s['dataset'])
    problem = dataset_error(path, s['dataset'])
    if problem:
        missing[path] = '  ' + problem
if missing:
    sys.exit("error: datasets to prepare first:\n" + '\n'.join(missing.values()))

# runs done in an earlier call are skipped; they must be of the same budget
os.makedirs(out, exist_ok=True)
results_path = os.path.join(out, 'results.csv')
done = {(r['rung'], int(r['seed'])): r for r in read_csv(results_path)}
for (r, s), row in done.items():
    want = tokens // settings[r]['tokens_per_step'] * settings[r]['tokens_per_step'] if r in settings else None
    if want is not None and int(row['tokens']) != want:
        sys.exit(f"error: {results_path} has {r} seed {s} trained on {int(row['tokens']):,} tokens, and this call "
                 f"asks for {want:,}: use another --out, or the same --tokens")
jobs = [(r, s) for s in range(1, seeds + 1) for r in selected if (r, s) not in done]
skipped = len(selected) * seeds - len(jobs)

# where the runs go: CUDA_VISIBLE_DEVICES spreads them over the GPUs; OMP_NUM_THREADS shares the CPU cores
cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
gpus = []
if jobs and (device is None or device == 'cuda'):
    import torch
    if torch.cuda.is_available():
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        gpus = visible.split(',') if visible else [str(i) for i in range(torch.cuda.device_count())]
        gpus = gpus[:torch.cuda.device_count()]
procs = procs or (4 * len(gpus) if gpus else cores)
threads = max(1, cores // procs)
slots = Queue()
for i in range(procs):
    slots.put(i)

# ----------------------------------------------------------------------------- run
where = f"on GPUs {','.join(gpus)}" if gpus else f"OMP_NUM_THREADS={threads}"
print(f"ladder: {len(selected)} rungs x {seeds} seeds, {tokens:,} tokens per run -> {out}/ | {len(jobs)} to train"
      f"{f', skipped {skipped} already in {results_path}' if skipped else ''} | {procs} at once, {where}", flush=True)
failed = []
pool = ThreadPoolExecutor(max_workers=procs)
futures = [pool.submit(work, r, s) for r, s in jobs]
bar = tqdm(as_completed(futures), total=len(jobs), unit='run', dynamic_ncols=True, disable=not sys.stderr.isatty())
try:
    for finished, future in enumerate(bar, 1):
        rung, seed, code, stderr = future.result()
        if code != 0:
            failed.append((rung, seed, code))
            tail = '\n'.join('    ' + line for line in stderr.strip().splitlines()[-5:])
            bar.write(f"failed: {rung} seed {seed} (exit {code}); {run_dir(rung, seed)}/train.log ends:\n{tail}",
                      file=sys.stderr)
            continue
        row = read_csv(os.path.join(run_dir(rung, seed), 'results.csv'))[-1]  # the run's own row: the last one
        append_row(results_path, {'rung': rung, 'seed': seed, 'seconds': row['train_seconds'],
                                  **{k: row[k] for k in COLUMNS if k in row}})
        bar.set_postfix_str(f"{rung} seed {seed}: val bpb {row['val_bpb']}")
        if bar.disable:  # no terminal: a line per finished run instead of the bar
            print(f"done {finished}/{len(jobs)}: {rung} seed {seed}: val bpb {row['val_bpb']}", flush=True)
except KeyboardInterrupt:  # the runs in progress had the Ctrl-C too: each saves its last.pt and stops
    pool.shutdown(cancel_futures=True)
    sys.exit(f"stopped: the finished runs are in {results_path}; the same command trains the others")
pool.shutdown()

# ----------------------------------------------------------------------------- report
rows = [r for r in read_csv(results_path) if r['rung'] in settings and int(r['seed']) <= seeds]
text = table(rows)
with open(os.path.join(out, 'ladder.md'), 'w') as f:
    f.write(text)
print('\n' + text)
pictures = plot(rows)
written = [os.path.join(out, 'ladder.md'), results_path] + pictures
print(f"wrote {', '.join(written)}" + ('' if pictures else "; no plots: matplotlib is not installed (pip install "
                                                           "matplotlib)"))
if failed:
    which = ', '.join(f"{r} seed {s} (exit {c})" for r, s, c in failed)
    sys.exit(f"error: {len(failed)} of {len(jobs)} runs failed: {which}; their logs: {out}/<rung>/seed<S>/train.log. "
             f"Run again to retry them")
