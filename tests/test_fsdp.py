"""FSDP2 (--parallel=fsdp) on the CPU (gloo, 2 processes): the curve of one process (and so of DDP, test_ddp.py), with
gradient accumulation, and with Muon; checkpoints in the one-process format, both ways; the parallel key."""
import shutil

import pytest
import torch

from conftest import TINY, run
from model import load_checkpoint
from test_ddp import ACCUM, assert_same_curve, curve, prepare, torchrun

FSDP = '--parallel=fsdp'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp('fsdp'))


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data):
    """One process, 20 steps of 4 micro-batches: the curve the FSDP runs must draw. --parallel=fsdp with one process
    changes nothing (one_10 below, without it, draws the same curve to the digit)."""
    p = run('train.py', *ACCUM, FSDP, f'--data_dir={data}', f'--out_dir={tmp_path_factory.mktemp("straight")}',
            '--max_iters=20')
    assert 'batch 1 processes x 4 micro-steps' in p.stdout and '| fsdp' not in p.stdout
    return curve(p.stdout)


@pytest.fixture(scope='module')
def one_10(tmp_path_factory, data, straight):
    """out_dir of one process after 10 steps (last.pt of iter 10)."""
    out = tmp_path_factory.mktemp('one') / 'out'
    p = run('train.py', *ACCUM, f'--data_dir={data}', f'--out_dir={out}', '--max_iters=10')
    assert curve(p.stdout) == {i: straight[i] for i in range(0, 11, 2)}
    return out


@pytest.fixture(scope='module')
def fsdp_10(tmp_path_factory, data):
    """out_dir and stdout of 2 FSDP processes after 10 steps of 2 micro-batches each."""
    out = tmp_path_factory.mktemp('fsdp') / 'out'
    return out, torchrun(2, *ACCUM, FSDP, f'--data_dir={data}', f'--out_dir={out}', '--max_iters=10', check=True).stdout


def test_fsdp_trains_the_curve_of_one_process(straight, fsdp_10):
    """Each process holds half of every weight, gradient and AdamW moment; gradients are reduce-scattered after the
    last micro-step only (set_requires_gradient_sync); the clipping norm is over every shard. The curve is one
    process's (and, as test_ddp.py shows for DDP, DDP's)."""
    out, stdout = fsdp_10
    assert '| dtype float32 | compile False | fsdp' in stdout
    assert 'batch 2 processes x 2 micro-steps x 4 x 16 tokens = 256 tokens per optimizer step' in stdout
    assert_same_curve(curve(stdout), straight, range(0, 11, 2))


def test_an_fsdp_checkpoint_is_one_process_s_and_resumes_in_one_process_and_samples(tmp_path, data, straight, one_10,
                                                                                  fsdp_10):
    ours, theirs = load_checkpoint(fsdp_10[0] / 'last.pt'), load_checkpoint(one_10 / 'last.pt')
    assert ours.keys() == theirs.keys() and ours['iter_num'] == theirs['iter_num'] == 10
    assert list(ours['model']) == list(theirs['model'])  # whole tensors under the plain names (no shards, no prefix)
    for k, v in theirs['model'].items():
        assert ours['model'][k].shape == v.shape and torch.allclose(ours['model'][k], v, atol=1e-5), k
    assert ours['model']['wte.weight'] is ours['model']['lm_head.weight']  # tied weights saved once, as state_dict()
    a, b = ours['optimizer'], theirs['optimizer']
    assert a['param_groups'] == b['param_groups'] and list(a['state']) == list(b['state'])  # by position, not name
    for i, state in b['state'].items():
        assert list(a['state'][i]) == list(state)
        for k, v in state.items():
            assert a['state'][i][k].shape == v.shape and torch.allclose(a['state'][i][k], v, atol=1e-5), (i, k)
    assert len(ours['rng']) == 2

    shutil.copytree(fsdp_10[0], tmp_path / 'out')
    p = run('train.py', *ACCUM, f'--data_dir={data}', f'--out_dir={tmp_path / "out"}', '--max_iters=20',
            '--init_from=resume')
    assert_same_curve(curve(p.stdout), straight, range(10, 21, 2))
    p = run('sample.py', f'--out_dir={fsdp_10[0]}', '--device=cpu', '--num_samples=1', '--max_new_tokens=5')
    assert p.stdout.startswith('---------- sample 1/1')


def test_fsdp_resumes_a_one_process_checkpoint(tmp_path, data, straight, one_10):
    """Every process loads the whole model before it is sharded, then takes its shards of the optimizer state
    (set_optimizer_state_dict); a DDP checkpoint is the same file."""
    shutil.copytree(one_10, tmp_path / 'out')
    p = torchrun(2, *ACCUM, FSDP, f'--data_dir={data}', f'--out_dir={tmp_path / "out"}', '--max_iters=20',
                 '--init_from=resume', check=True)
    assert_same_curve(curve(p.stdout), straight, range(10, 21, 2))


def test_muon_under_fsdp_orthogonalises_whole_matrices(tmp_path, data):
    """Newton-Schulz of a shard is not a shard of Newton-Schulz of the matrix: each process gathers every whole
    update, orthogonalises it and keeps its shard, so the curve is one process's."""
    args = [*ACCUM, '--optim=muon', f'--data_dir={data}', '--max_iters=6']
    one = curve(run('train.py', *args, f'--out_dir={tmp_path / "one"}').stdout)
    p = torchrun(2, *args, FSDP, f'--out_dir={tmp_path / "fsdp"}', check=True)
    assert_same_curve(curve(p.stdout), one, range(0, 7, 2))


def test_parallel_is_ddp_or_fsdp(tmp_path, data):
    p = run('train.py', *TINY, f'--data_dir={data}', f'--out_dir={tmp_path}', '--parallel=zero', check=False)
    assert p.returncode == 1 and p.stderr == "error: parallel must be 'ddp' or 'fsdp', got 'zero'\n"
