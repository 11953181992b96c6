"""torchrun on the CPU (gloo): the batch rule, DDP equals one process, MFU per device, faults that stop every rank."""
import re
import subprocess
import sys

import pytest

from conftest import REPO, TINY, run, script_env

STEPS = ['--max_iters=6', '--eval_interval=6', '--lr_decay_iters=6', '--log_interval=3']


def torchrun(n, *args, timeout=300):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}',
           str(REPO / 'train.py'), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=timeout)


def evals(stdout):
    return [tuple(map(float, e)) for e in re.findall(r'eval +\d+ \| train ([\d.]+) \| val ([\d.]+)', stdout)]


def test_four_processes_train_the_same_curve_as_one(tmp_path, char_data):
    """The design card's `torchrun --nproc_per_node=4 train.py` runs as written: batch_size 8 splits into 4 x 2, the
    tokens per optimizer step stay those of one process, and so does the curve (the same sequences every step)."""
    common = [*TINY, f'--data_dir={char_data}', *STEPS, '--device_peak_flops=1e10']
    one = run('train.py', *common, f'--out_dir={tmp_path / "one"}')
    four = torchrun(4, *common, f'--out_dir={tmp_path / "four"}')
    assert four.returncode == 0, four.stderr
    assert 'batch 1 processes x 1 micro-steps x 8 x 16 tokens = 128 tokens per optimizer step' in one.stdout
    assert 'batch 4 processes x 1 micro-steps x 2 x 16 tokens = 128 tokens per optimizer step' in four.stdout
    assert len(evals(four.stdout)) == 2
    for a, b in zip(evals(one.stdout), evals(four.stdout)):
        assert a == pytest.approx(b, abs=2e-4)  # the same model after 6 steps, up to float summation order

    # MFU is per device: the tokens/s of all 4 processes over 4 devices' peak (it was 4x too high)
    flops = int(re.search(r'\| ([\d,]+) FLOPs/token', four.stdout)[1].replace(',', ''))
    lines = re.findall(r'iter +\d+ \| loss [\d.]+ \| lr \S+ \| ([\d,]+) tok/s \| mfu ([\d.]+)% \| ([\d.]+) ms/iter',
                       four.stdout)
    assert lines
    for tok_s, mfu, ms in lines:
        tok_s = float(tok_s.replace(',', ''))
        assert tok_s == pytest.approx(128 / (float(ms) / 1000), rel=2e-3)
        assert float(mfu) == pytest.approx(100 * flops * tok_s / 4 / 1e10, abs=0.06)


def test_a_batch_that_does_not_divide_is_one_line_saying_what_would(tmp_path, char_data):
    env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='3', LOCAL_WORLD_SIZE='3')  # rank 0 of 3, as torchrun sets it
    p = subprocess.run([sys.executable, str(REPO / 'train.py'), *TINY, f'--data_dir={char_data}',
                        f'--out_dir={tmp_path}'], cwd=REPO, env={**script_env(), **env}, capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr == (
        "error: an optimizer step takes gradient_accumulation_steps x batch_size = 1 x 8 = 8 sequences, which do not "
        "divide among 3 processes: run 1, 2, 4, 8 processes, or make the product a multiple of 3\n")


def test_a_failed_checkpoint_write_stops_every_rank(tmp_path, char_data):
    out = tmp_path / 'out'
    (out / 'last.pt').mkdir(parents=True)  # the save's rename onto last.pt fails (even for root)
    p = torchrun(2, *TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--max_iters=20', '--eval_interval=5',
                 timeout=120)  # before the fix, rank 1 waited in its next collective for rank 0, which had exited
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith('error: ')]
    assert errors == [f"error: cannot write {out / 'last.pt'} at iter 5 (Is a directory); the previous one is intact: "
                      f"free some space, then resume with --init_from=resume"]
    assert 'eval     10' not in p.stdout
    assert '[rank' not in p.stderr  # no rank died in a collective ('Connection closed by peer'; with nccl: a hang)
