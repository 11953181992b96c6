"""A newcomer's first hour: what a trained model is protected from, the one-line answers to wrong values, the CPU
threads on a busy machine, and what a run says (resume point, log lines in files, pictures or why there are none)."""
import os
import re
import subprocess
import sys

import pytest
import torch

import common
from common import pyplot
from conftest import REPO, TINY, csv_rows, on_terminal, run, run_here, script_env
from test_faults import assert_error

SHORT = ['--max_iters=4', '--eval_interval=4', '--eval_iters=1']


def test_a_new_run_never_replaces_a_trained_model_unasked(tmp_path, char_data):
    """A second run into the same out_dir stops with one line (how to resume, how to start over) and leaves the
    checkpoints alone; a resume says where it continues from; --overwrite=True starts over."""
    out = tmp_path / 'out'
    args = [*TINY, f'--data_dir={char_data}', f'--out_dir={out}', *SHORT]
    p = run('train.py', *args)
    if pyplot() is not None:
        assert f"loss curves: {out / 'loss.png'}" in p.stdout and (out / 'loss.png').stat().st_size > 10_000
    before = {p.name: p.stat().st_mtime_ns for p in out.glob('*.pt')}
    for again in ([], ['--max_iters=0'], ['--init_from=scratch', '--n_layer=1']):  # the same run, 0 steps, another
        p = run_here('train.py', *args, *again)
        assert_error(p, f"{out} holds the checkpoints of an earlier run (last.pt, best.pt)", '--init_from=resume',
                       '--overwrite=True', '--out_dir')
    assert {p.name: p.stat().st_mtime_ns for p in out.glob('*.pt')} == before  # untouched
    env = {k: v for k, v in script_env().items() if k != 'OMP_NUM_THREADS'}  # train.py chooses its threads
    p = subprocess.run([sys.executable, str(REPO / 'train.py'), *map(str, args), '--init_from=resume',
                        '--max_iters=6', '--eval_interval=6'], cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and '| threads 1' in p.stdout  # the threads of the run it continues (OMP_NUM_THREADS=1)
    assert re.search(rf"^resuming {re.escape(str(out / 'last.pt'))} at iter 4 \(best val [\d.]+\), to max_iters=6$",
                     p.stdout, re.M)
    step = 8 * 16  # tokens per step: batch_size x block_size of TINY
    first, resumed = csv_rows(out / 'results.csv')  # the tokens each run trained: a resume counts from where it began
    assert (first['iters'], first['tokens'], resumed['iters'], resumed['tokens']) == ('4', str(4 * step), '6',
                                                                                      str(2 * step))
    for r in (first, resumed):  # tokens/s: over the steps after the first, evals left out; those steps' seconds are
        n = int(r['tokens']) // step  # at most the training seconds (printed to 0.1 s)
        assert 0 < int(r['tokens']) * (n - 1) / n / float(r['tokens_per_sec']) <= float(r['train_seconds']) + 0.05
    assert [(r['iter'], r['tokens']) for r in csv_rows(out / 'evals.csv')] == [('0', '0'), ('4', str(4 * step)),
                                                                                ('6', str(6 * step))]
    assert run_here('train.py', *args, '--eval_only=True', '--init_from=resume').returncode == 0  # writes nothing
    p = run('train.py', *args, '--overwrite=True')  # asked for: it starts over
    assert 'done 4 iters' in p.stdout and {p.name for p in out.glob('*.pt')} == {'last.pt', 'best.pt'}


@pytest.mark.parametrize('arg, message', [
    ('--max_iters=-5', 'max_iters=-5 (at least 0)'),
    ('--eval_interval=0', 'eval_interval=0 (at least 1)'),
    ('--compile=maybe', "compile='maybe' (True, False, or None: on CUDA for a run long enough to win it back)"),
    ('--device=gpu', "device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    ('--dtype=fp8', 'dtype must be float32, bfloat16 or float16'),
])
def test_wrong_values_are_one_line_before_anything_is_written(tmp_path, char_data, arg, message):
    p = run_here('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path / "out"}', arg)
    assert_error(p, message)
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine with a GPU has CUDA')
@pytest.mark.parametrize('script', ['train.py', 'sample.py', 'bench.py'])
def test_cuda_asked_of_a_machine_without_it_is_one_line(script, tmp_path):
    p = run_here(script, '--device=cuda', f'--out_dir={tmp_path}')
    assert_error(p, "device 'cuda' is not available", '--device=cpu')


def test_t_launch_is_not_a_setting(train_defaults):
    assert not any('launch' in k for k in train_defaults)


def test_cpu_threads_leave_the_busy_cores_to_the_programs_on_them(monkeypatch):
    rule = common.cpu_threads.__wrapped__  # the rule itself: cpu_threads keeps its first answer for the process
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(torch, 'get_num_threads', lambda: cores)  # PyTorch's default: every core
    for busy, threads in ((0.0, cores), (cores - 0.8, 1), (cores + 3.0, 1), (max(0, cores - 2) + 0.1, min(cores, 2))):
        monkeypatch.setattr(common, 'busy_cores', lambda: busy)
        assert rule() == threads, busy
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # the user's choice wins
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 1)
    monkeypatch.setattr(common, 'busy_cores', lambda: 0.0)
    assert rule() == 1


def test_busy_cores_sees_another_program_on_the_cores():
    spin = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        assert common.busy_cores(0.5) > 0.7  # one core of the spinning loop, whatever else the machine does
    finally:
        spin.kill()
        spin.wait()


def test_log_lines_reach_a_file_while_the_bar_is_on_the_terminal(tmp_path, char_data):
    """stdout to a file, stderr on a terminal (python train.py > log): the bar shows there, and every log line is
    still in the file (it used to have only the eval lines)."""
    code, stdout, terminal = on_terminal('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}',
                                         '--max_iters=10', '--eval_interval=10', '--eval_iters=1', timeout=120)
    assert code == 0
    assert re.findall(r'^iter +(\d+) \|', stdout, re.M) == ['5', '10'] and '\r' not in stdout
    assert '10/10' in terminal  # the bar, on the terminal


def test_without_matplotlib_a_run_says_why_there_are_no_loss_curves(tmp_path, char_data, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # as without matplotlib: import matplotlib fails
    p = run_here('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', *SHORT)
    assert p.returncode == 0 and 'loss curves: not drawn, matplotlib is not installed (pip install matplotlib)' in \
        p.stdout and not (tmp_path / 'loss.png').exists()


def test_make_run_installs_what_draws_the_pictures():
    """make run (setup) installs requirements.txt, which has matplotlib: loss.png, attention maps, ladder plots."""
    makefile = (REPO / 'Makefile').read_text()
    assert re.search(r'^\$\(VENV\)/\.installed: requirements\.txt', makefile, re.M) and '-r requirements.txt' in makefile
    assert re.search(r'^run: setup$', makefile, re.M)
    packages = [re.split(r'[<=>\s#]', line)[0] for line in (REPO / 'requirements.txt').read_text().splitlines()]
    assert {'torch', 'numpy', 'tiktoken', 'tqdm', 'matplotlib'} <= set(packages)
