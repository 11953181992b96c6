"""What the numbers train.py prints and saves mean: the learning rate of every step, the startup line's seconds, the
loss of a step taken in micro-batches, the gradients they add up to, and the token counts of the CSV files (here and, for a resumed run, in
test_newcomer.py). Each is pinned against hand values or against the same quantity computed another way."""
import math
import re

import pytest

from conftest import TINY, csv_rows, run
from optim import lr_at

LR, WARMUP, DECAY, MIN_LR = 1e-2, 10, 110, 1e-4


@pytest.mark.parametrize('it, lr', [
    (0, LR * 1 / 11),  # warmup: linear from lr / (warmup + 1) ...
    (4, LR * 5 / 11),
    (9, LR * 10 / 11),  # ... the last warmup step
    (10, LR),  # the peak, where the cosine starts: cos(0) = 1
    (60, MIN_LR + 0.5 * (LR - MIN_LR)),  # half way from the end of the warmup to decay_iters: cos(pi / 2) = 0
    (35, MIN_LR + 0.5 * (1 + math.cos(math.pi / 4)) * (LR - MIN_LR)),  # a quarter of the way
    (110, MIN_LR),  # the end of the decay
    (500, MIN_LR),  # and after it
])
def test_the_schedule_at_hand_values(it, lr):
    assert lr_at(it, LR, WARMUP, DECAY, MIN_LR) == pytest.approx(lr, rel=1e-12)


def test_the_schedule_without_warmup_starts_at_the_peak():
    assert lr_at(0, LR, 0, DECAY, MIN_LR) == LR
    assert lr_at(DECAY // 2, LR, 0, DECAY, MIN_LR) == pytest.approx(MIN_LR + 0.5 * (LR - MIN_LR))


def iter_lines(stdout):
    """{iter: (loss, lr)} of the log lines."""
    return {int(i): (float(loss), float(lr)) for i, loss, lr in
            re.findall(r'^iter +(\d+) \| loss ([\d.]+) \| lr (\S+) \|', stdout, re.M)}


def test_train_py_runs_the_schedule_it_prints(tmp_path, char_data):
    """The lr of the log lines and of evals.csv is lr_at's, with train.py's warmup_iters, lr_decay_iters and min_lr
    (the log line shows the lr of the step just taken, iter - 1)."""
    p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--max_iters=30',
            '--warmup_iters=10', '--lr_decay_iters=25', '--learning_rate=1e-2', '--min_lr=1e-4', '--log_interval=3',
            '--eval_interval=10', '--eval_iters=1')
    lines = iter_lines(p.stdout)
    assert sorted(lines) == list(range(3, 31, 3))
    for it, (_, lr) in lines.items():
        assert lr == pytest.approx(lr_at(it - 1, 1e-2, 10, 25, 1e-4), rel=5e-3)  # printed to 3 digits
    evals = csv_rows(tmp_path / 'evals.csv')
    assert [int(r['iter']) for r in evals] == [0, 10, 20, 30]
    for r in evals:
        assert float(r['lr']) == pytest.approx(lr_at(int(r['iter']), 1e-2, 10, 25, 1e-4), rel=1e-3)
    # the startup line: its parts (each rounded to 0.1 s) add up to the seconds from launch to the first step's end
    total, *parts = map(float, re.search(r'^started \| ([\d.]+) s from launch to the end of the first step \| imports '
                                         r'([\d.]+) s \| setup ([\d.]+) s \| evals ([\d.]+) s \| first step ([\d.]+) s',
                                         p.stdout, re.M).groups())
    assert sum(parts) == pytest.approx(total, abs=0.25)


def accumulated(tmp_path, char_data, accum, batch):
    out = tmp_path / f'{accum}x{batch}'
    p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--max_iters=3', '--log_interval=1',
            f'--gradient_accumulation_steps={accum}', f'--batch_size={batch}', '--grad_norms=True', '--eval_iters=1')
    norms = [{k: float(v) for k, v in r.items()} for r in csv_rows(out / 'grad_norms.csv')]
    return iter_lines(p.stdout), norms, csv_rows(out / 'results.csv')[0]


def test_accumulation_of_k_micro_batches_is_one_batch_k_times_as_large(tmp_path, char_data):
    """4 micro-batches of 2 sequences make the same step as one batch of 8 (the same sequences, drawn alike): the
    printed loss is the step's mean loss, not 4 times it, and the gradients (each block's norm, before clipping) are
    the mean's, not their sum (nanoGPT's issue #206). Over 3 steps, so the weights they move agree too."""
    lines_4, norms_4, result_4 = accumulated(tmp_path, char_data, 4, 2)
    lines_1, norms_1, result_1 = accumulated(tmp_path, char_data, 1, 8)
    assert sorted(lines_4) == sorted(lines_1) == [2, 3]
    for it in lines_1:
        assert lines_4[it][0] == pytest.approx(lines_1[it][0], abs=2e-4)  # printed to 4 decimals
    assert len(norms_4) == len(norms_1) == 3
    for a, b in zip(norms_4, norms_1):
        assert a.keys() == b.keys() and a['iter'] == b['iter']
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=2e-3), k  # printed to 4 significant digits
    assert result_4['tokens'] == result_1['tokens'] == str(3 * 8 * 16)  # iters x sequences x block_size
