"""
Train the ladder: each rung of config/ladder/ (and the side branches in config/ladder/side/) with several seeds and
one token budget, several train.py processes at once, then a table of the mean ± std over seeds.

    python ladder.py                                      # every rung, 3 seeds, 4,096,000 tokens each (a GPU)
    python ladder.py --quick                              # CPU-sized: rungs 01-12 and names_*, 3 seeds, fewer tokens
    python ladder.py --rungs=08_residual,side/lr_1e-4 --seeds=5
    python ladder.py --args='--compile=False'             # more train.py overrides, given to every run
    python ladder.py --branch=tokenizer                   # a branch: the rungs of config/ladder/tokenizer/ (its budget)

A run is `python train.py config/ladder/<rung>.py --seed=S --max_iters=... --out_dir=<out>/<rung>/seed<S>`, its
output in train.log there. Every finished run adds a row to <out>/results.csv, and a later call skips the (rung,
seed) pairs already there: an interrupted ladder resumes (a run cut off starts over), more seeds train only the new
ones. The table goes to <out>/ladder.md (and is printed); bpb.png and curves.png too when matplotlib is installed.
"""
import csv
import functools
import math
import os
import runpy
import shlex
import statistics
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor, as_completed
from queue import Queue

import numpy as np
from tqdm import tqdm

from common import pyplot
from configurator import ConfigError, configure, parse_config, read_settings, split_args
from data.common import Tokenizer, dataset_error, load_meta
from model import GPT, GPTConfig, model_config

# -----------------------------------------------------------------------------
branch = ''  # '' = the ladder (config/ladder/*.py and side/); else a branch of its own: the rungs in
# config/ladder/<branch>/ ('tokenizer', 'scaling'), each with the budget its _branch.py file sets (docs/ladder.md)
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
out = None  # None: out-ladder-runs (quick: out-ladder-runs-quick; a branch: out-ladder-runs-<branch>)
flops = None  # None: every run trains `tokens` tokens; else its training FLOPs (model.flops_per_token() x tokens):
# equal compute for rungs whose tokens cost differently (the tokenizer branch: the output layer grows with the vocab)
curves = '01_bigram,03_attention,08_residual,11_pre_ln,13_gpt2_bpe,20_llama'  # the rungs of curves.png
grad_norm_rungs = '07_four_blocks,08_residual'  # runs that log each block's gradient norm (grad_norms.png)
# -----------------------------------------------------------------------------
if any(a in ('-h', '--help') for a in sys.argv[1:]):
    print(__doc__.strip() + '\n')  # then the keys, from configure()
config = configure(globals())
here = os.path.dirname(os.path.abspath(__file__))
ladder_dir = os.path.join(here, 'config', 'ladder')
BRANCHES = sorted(d for d in os.listdir(ladder_dir) if os.path.isfile(os.path.join(ladder_dir, d, '_branch.py')))
if branch:  # the branch's own settings (its _branch.py), where the command line sets none
    if branch not in BRANCHES:
        sys.exit(f"error: no such branch: {branch} (branches: {', '.join(BRANCHES)})")
    given = {k for k, _ in split_args(config, sys.argv[1:])[1]}
    own = runpy.run_path(os.path.join(ladder_dir, branch, '_branch.py'))
    globals().update({k: v for k, v in own.items() if k in config and k not in given})
tokens = int(tokens or (200_000 if quick else 4_096_000))
evals = evals or (4 if quick else 8)
eval_iters = eval_iters or (4 if quick else None)
out = out or ('out-ladder-runs-quick' if quick else f'out-ladder-runs-{branch}' if branch else 'out-ladder-runs')
budget = f"{flops:,.3g} training FLOPs per run" if flops else f"{tokens:,} training tokens per run"
COLUMNS = ['rung', 'seed', 'params', 'tokens', 'val_loss', 'val_acc', 'val_bpb', 'best_val_loss', 'best_val_bpb',
           'tokens_per_sec', 'seconds', 'device']


def folder_rungs(folder=''):
    """The rungs of config/ladder/<folder> as names ('08_residual', 'side/lr_1e-4'); a file whose name starts with _
    is not a rung (a branch's shared settings)."""
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ladder_dir, folder)) if f.endswith('.py') and f[0] != '_')
    return [os.path.join(folder, n) if folder else n for n in names]


def all_rungs():
    """The ladder (config/ladder/*.py, then side/*.py), then every branch's rungs ('tokenizer/bpe1024')."""
    return folder_rungs() + folder_rungs('side') + [r for b in BRANCHES for r in folder_rungs(b)]


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
    max_iters = iters[rung]
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
    lines = [f"Mean ± std over seeds (sample std, n - 1); {budget} (rounded down to whole steps).",
             "end: at the end of the budget; best-on-val: at the eval of the lowest val loss.",
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


@functools.cache
def rung_model(rung):
    """The GPT that train.py builds for a rung (its settings, its prepared dataset's vocabulary), made once: the FLOP
    budget and the branches' reports read its sizes."""
    s = settings[rung]
    vocab = load_meta(os.path.join(s['data_dir'], s['dataset']))['vocab_size']
    return GPT(GPTConfig(**model_config(s, vocab)))


def val_bytes_per_token(s):
    """UTF-8 bytes per token of the val split of a rung's prepared dataset."""
    path = os.path.join(s['data_dir'], s['dataset'])
    meta = load_meta(path)
    val = np.memmap(os.path.join(path, 'val.bin'), dtype=meta['dtype'], mode='r')
    return Tokenizer(meta).token_bytes()[val].sum() / len(val)


def tokenizer_report(rows):
    """The tokenizer branch: a table per tokenizer (vocabulary, bytes per token, parameters, bpb, tokens seen) and
    tokenizer.png, val bpb against the vocabulary. Returns (markdown, files written)."""
    lines = ["| rung | vocabulary | val bytes / token | table + output params | body params | tokens per run "
             "| ~bytes per run | val bpb (end) | best-on-val bpb | tokens/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    points = []  # (vocabulary, mean, std, rung), by vocabulary
    for rung in sorted((r for r in selected if any(row['rung'] == r for row in rows)),
                       key=lambda r: rung_model(r).config.vocab_size):
        runs = [r for r in rows if r['rung'] == rung]
        model = rung_model(rung)
        vocab = model.config.vocab_size
        tables = sum({id(p): p.numel() for p in (model.wte.weight, model.lm_head.weight)}.values())  # tied: once
        body = model.get_num_params(non_embedding=False) - tables
        per_token = val_bytes_per_token(settings[rung])
        col = lambda key: [float(r[key]) for r in runs]  # noqa: E731
        lines.append(f"| `{rung}` | {vocab:,} | {per_token:.3f} | {tables:,} | {body:,} | {int(runs[0]['tokens']):,} "
                     f"| {int(runs[0]['tokens']) * per_token / 1e6:.1f}M | {fmt(col('val_bpb'), 4)} "
                     f"| {fmt(col('best_val_bpb'), 4)} | {fmt(col('tokens_per_sec'), 0)} |")
        points.append((vocab, *mean_std(col('val_bpb')), rung))
    plt = pyplot()
    if plt is None or not points:
        return '\n'.join(lines) + '\n', []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[0 if math.isnan(p[2]) else p[2] for p in points],
                fmt='o-', capsize=3)
    for vocab, mean, _, rung in points:
        ax.annotate(rung.split('/')[-1], (vocab, mean), textcoords='offset points', xytext=(5, 5), fontsize=8)
    ax.set(xscale='log', xlabel='vocabulary (tokens)', ylabel='val bits per byte (end, mean ± std)',
           title=textwrap.fill(f'one body, one text, {budget}', 60))
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'tokenizer.png'), dpi=100)
    plt.close(fig)
    return '\n'.join(lines) + '\n', [os.path.join(out, 'tokenizer.png')]


def fit_power_law(n, loss):
    """L(N) = E + A N^-alpha, least squares: for each alpha of a grid (0.005 to 2) E and A are a straight-line fit of
    loss against N^-alpha, solved exactly; the alpha of the smallest squared error. Returns (E, A, alpha)."""
    n, loss = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    alphas = np.linspace(0.005, 2.0, 4000)[:, None]
    u = n[None, :] ** -alphas  # (alphas, runs)
    du, dl = u - u.mean(1, keepdims=True), loss - loss.mean()
    a = (du * dl).sum(1) / (du ** 2).sum(1)
    e = loss.mean() - a * u.mean(1)
    best = int((((e[:, None] + a[:, None] * u) - loss) ** 2).sum(1).argmin())
    return float(e[best]), float(a[best]), float(alphas[best, 0])


def scaling_report(rows):
    """The scaling branch: L(N) = E + A N^-alpha fitted to every run's val bpb at the end (N: the non-embedding
    parameters), its uncertainty from 200 bootstrap fits (the runs of each size drawn again with replacement), each
    size's residual, and the fit without the largest size against what that size measured; scaling.png."""
    runs = {r: [float(row['val_bpb']) for row in rows if row['rung'] == r] for r in selected}
    runs = {r: v for r, v in runs.items() if v}
    if len(runs) < 3:
        return "(the fit needs 3 sizes or more)\n", []
    size = {r: rung_model(r).get_num_params() for r in runs}  # 6N's N: the output layer in, the token table out
    n = [size[r] for r in runs for _ in runs[r]]
    e, a, alpha = fit_power_law(n, [v for r in runs for v in runs[r]])
    rng = np.random.default_rng(0)
    boot = np.array([fit_power_law(n, [v for r in runs for v in rng.choice(runs[r], len(runs[r]))])
                     for _ in range(200)])
    *head, last = list(runs)
    e2, a2, alpha2 = fit_power_law([size[r] for r in head for _ in runs[r]], [v for r in head for v in runs[r]])
    lines = [f"L(N) = E + A N^-alpha over {len(n)} runs of {len(runs)} sizes ({budget}): alpha = {alpha:.3f} ± "
             f"{boot[:, 2].std():.3f}, E = {e:.3f} ± {boot[:, 0].std():.3f} bits per byte, A = {a:.3g} (± : the "
             f"std of 200 bootstrap fits). Without the largest size the fit predicts "
             f"{e2 + a2 * size[last] ** -alpha2:.4f} for it; it measured {statistics.mean(runs[last]):.4f}."
             + (" alpha is at an end of the fit's range (0.005 to 2): these points follow no power law" if
                not 0.005 < alpha < 2.0 else ""), "",
             "| rung | N (non-embedding) | val bpb (end) | the fit | residual |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in runs:
        fitted = e + a * size[r] ** -alpha
        lines.append(f"| `{r}` | {size[r]:,} | {fmt(runs[r], 4)} | {fitted:.4f} "
                     f"| {statistics.mean(runs[r]) - fitted:+.4f} |")
    plt = pyplot()
    if plt is None:
        return '\n'.join(lines) + '\n', []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(n, [v for r in runs for v in runs[r]], 'o', label='runs (val bpb at the end)')
    grid = np.geomspace(min(n), max(n), 100)
    ax.plot(grid, e + a * grid ** -alpha, '-', label=f'E + A N^-alpha, alpha = {alpha:.3f}, E = {e:.3f}')
    ax.set(xscale='log', xlabel='non-embedding parameters N', ylabel='val bits per byte',
           title=textwrap.fill(f'scaling branch, {budget}', 60))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'scaling.png'), dpi=100)
    plt.close(fig)
    return '\n'.join(lines) + '\n', [os.path.join(out, 'scaling.png')]


REPORTS = {'tokenizer': tokenizer_report, 'scaling': scaling_report}  # a branch's own table and plot, beside the table


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
    ax.set(ylabel='val bits per byte', title=f'mean ± std over seeds, {budget}')
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
selected = [r.strip() for r in rungs.split(',') if r.strip()] if rungs else folder_rungs(branch) if branch else \
    [r for r in folder_rungs() + folder_rungs('side') if not quick or r[:2].isdigit() and int(r[:2]) <= 12
     or r.startswith('names_')]
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

# every dataset prepared, or the commands that prepare them
missing = {}
for r, s in settings.items():
    path = os.path.join(s['data_dir'], s['dataset'])
    problem = dataset_error(path, s['dataset'])
    if problem:
        missing[path] = '  ' + problem
if missing:
    sys.exit("error: datasets to prepare first:\n" + '\n'.join(missing.values()))

# each run's steps: `tokens` tokens, or (flops) the tokens of `flops` training FLOPs at the rung's FLOPs per token
iters = {r: int(flops // (rung_model(r).flops_per_token() * s['tokens_per_step'])) if flops
         else tokens // s['tokens_per_step'] for r, s in settings.items()}
short = [r for r, n in iters.items() if n < 1]
if short:
    sys.exit(f"error: {f'--flops={flops:.3g}' if flops else f'--tokens={tokens:,}'} is less than one step of "
             f"{', '.join(short)}")

# runs done in an earlier call are skipped; they must be of the same budget
os.makedirs(out, exist_ok=True)
results_path = os.path.join(out, 'results.csv')
done = {(r['rung'], int(r['seed'])): r for r in read_csv(results_path)}
for (r, s), row in done.items():
    want = iters[r] * settings[r]['tokens_per_step'] if r in settings else None
    if want is not None and int(row['tokens']) != want:
        sys.exit(f"error: {results_path} has {r} seed {s} trained on {int(row['tokens']):,} tokens, and this call "
                 f"asks for {want:,}: use another --out, or the same --tokens (--flops)")
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
print(f"ladder: {len(selected)} rungs x {seeds} seeds, {budget} -> {out}/ | {len(jobs)} to train"
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
own, own_pictures = REPORTS[branch](rows) if branch in REPORTS else ('', [])
text += f"\n{own}" if own else ''
with open(os.path.join(out, 'ladder.md'), 'w') as f:
    f.write(text)
print('\n' + text)
pictures = plot(rows) + own_pictures
written = [os.path.join(out, 'ladder.md'), results_path] + pictures
print(f"wrote {', '.join(written)}" + ('' if pictures else "; no plots: matplotlib is not installed (pip install "
                                                           "matplotlib)"))
if failed:
    which = ', '.join(f"{r} seed {s} (exit {c})" for r, s, c in failed)
    sys.exit(f"error: {len(failed)} of {len(jobs)} runs failed: {which}; their logs: {out}/<rung>/seed<S>/train.log. "
             f"Run again to retry them")
