"""Faults and bad input: one clear error line for every mistake, and no checkpoint ever lost or corrupted.

Where each case is tested (docs/faults.md has the table for users):
 1, 2  unknown key, wrong type      test_configurator.py: test_unknown_key_names_the_closest_keys,
                                    test_wrong_type_names_key_and_expected_type, test_cli_errors_are_one_line_and_fail
 3     invalid model flags          test_invalid_model_flags_fail_before_anything_is_written
 4     dataset not prepared         test_cli.py: test_missing_dataset_and_checkpoint_are_clear_errors
 5     dataset != checkpoint        test_resume_with_other_tokens_or_another_model_is_refused
 6     no / damaged checkpoint      test_resume_without_a_checkpoint_or_from_a_damaged_one, test_load_checkpoint_*
 7     atomic checkpoint writes     test_a_failed_write_leaves_the_previous_checkpoint,
                                    test_killing_the_writer_mid_save_leaves_a_readable_checkpoint
 8     kill -9, then resume         test_kill_9_then_resume_continues_the_same_curve
 9     SIGTERM / Ctrl-C             test_a_signal_saves_and_says_how_to_resume
10     loss NaN / inf               test_a_non_finite_loss_stops_without_saving, test_skip_policy_*
11     out_dir unwritable / full    test_unwritable_out_dir_fails_before_training, test_too_little_disk_space_*
12     sample.py input              test_sample.py: test_bad_sampling_input_is_one_clear_line, test_prompt_file_errors,
                                    test_a_prompt_longer_than_the_context_is_cropped_with_a_note
13     compiled / DDP checkpoints   test_a_compiled_ddp_checkpoint_loads_in_sample_and_resume (and test_model.py)
14     no code from checkpoints     test_a_checkpoint_with_code_in_it_is_refused, test_only_load_checkpoint_unpickles
15     prepare.py faults            test_prepare.py: test_prepare_writes_bins_and_meta (idempotent),
                                    test_an_interrupted_prepare_is_not_taken_for_a_good_one,
                                    test_prepare_rejects_empty_missing_and_non_utf8_input
16     cuda_graph where it can't    test_speed.py: test_cuda_graph_says_what_it_needs
17     a writer's optimizer kernels test_a_resumed_run_steps_with_this_devices_kernels_not_its_writers
18     fp8_head where it can't      test_speed.py: test_fp8_head_says_what_it_needs,
                                    test_fp8_head_refuses_a_device_without_float8_matmuls
"""
import csv
import errno
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, SAMPLE_TEXT, TINY, run, run_here, script_env
from common import load_checkpoint, save_checkpoint

# an uninterrupted run of 100 iterations; dropout, so that the torch RNG must be restored too
CURVE = ['--max_iters=100', '--eval_interval=10', '--lr_decay_iters=100', '--dropout=0.1']


def evals(stdout):
    return re.findall(r'eval +(\d+) \| train ([\d.]+) \| val ([\d.]+)', stdout)


def train(data, out, *args, check=False):
    return run('train.py', *TINY, f'--data_dir={data}', f'--out_dir={out}', *args, check=check)


def train_here(data, out, *args):
    """train() for a run that stops at a check before it trains: in this process (conftest.run_here)."""
    return run_here('train.py', *TINY, f'--data_dir={data}', f'--out_dir={out}', *args)


def start(data, out, *args):
    """train.py as a child process whose output can be read line by line while it runs."""
    return subprocess.Popen([sys.executable, str(REPO / 'train.py'), *TINY, f'--data_dir={data}', f'--out_dir={out}',
                             *args], cwd=REPO, env=script_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(p, pattern):
    for line in p.stdout:
        if re.match(pattern, line):
            return
    raise AssertionError(f"train.py ended (exit {p.wait()}) before printing {pattern!r}: {p.stderr.read()}")


def assert_error(p, *expected):
    """A non-zero exit with exactly one line on stderr, `error: ...`, that says each of `expected`."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and lines[0].startswith('error: '), p.stderr
    for text in expected:
        assert text in lines[0]


def digests(out):
    """sha256 of every file in out: the proof that nothing was written."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('faults')
    (tmp / 'input.txt').write_text(SAMPLE_TEXT * 40)
    run('data/shakespeare_char/prepare.py', '--input', tmp / 'input.txt', '--out_dir',
        tmp / 'data' / 'shakespeare_char')
    return tmp / 'data'


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data):
    """out_dir of a 10-iteration run: last.pt and best.pt of iter 10, and its stdout in train.log."""
    out = tmp_path_factory.mktemp('trained') / 'out'
    log = train(data, out, '--max_iters=10', '--eval_interval=5', check=True).stdout
    (out / 'train.log').write_text(log)
    return out


@pytest.fixture
def out(tmp_path, trained):
    """A copy of the trained out_dir, for a test to resume from or damage."""
    shutil.copytree(trained, tmp_path / 'out')
    return tmp_path / 'out'


@pytest.fixture(scope='module')
def straight(tmp_path_factory, data):
    """The eval lines of an uninterrupted CURVE run."""
    return evals(train(data, tmp_path_factory.mktemp('straight'), *CURVE, check=True).stdout)


# ----------------------------------------------------------------------------- 3: model flags
@pytest.mark.parametrize('flag,message', [
    ('--n_head=3', 'n_embd=32 must be divisible by n_head=3'),
    ('--n_kv_head=3', 'n_kv_head=3 must divide n_head=2'),
    ('--ffn=geglu', "ffn='geglu' is not one of none, relu, gelu, gelu_tanh, relu2, swiglu, tanh"),
])
def test_invalid_model_flags_fail_before_anything_is_written(tmp_path, data, flag, message):
    assert_error(train_here(data, tmp_path / 'out', flag), message)
    assert not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------- 5, 6: resume checks
def test_resume_with_other_tokens_or_another_model_is_refused(tmp_path, data, out):
    before = digests(out)
    (tmp_path / 'other.txt').write_text('abc def\n' * 400)
    run_here('data/shakespeare_char/prepare.py', '--input', tmp_path / 'other.txt', '--out_dir',
             tmp_path / 'data' / 'other')
    p = train_here(tmp_path / 'data', out, '--dataset=other', '--init_from=resume', '--max_iters=20')
    assert_error(p, f"was trained on dataset 'shakespeare_char' (char, {len(set(SAMPLE_TEXT))} tokens); dataset "
                    f"'other' has other tokens (char, 8 tokens)")
    p = train_here(data, out, '--n_layer=3', '--init_from=resume', '--max_iters=20')
    assert_error(p, "the config's model differs from the one in", 'n_layer=3 (checkpoint: 2)')
    assert digests(out) == before


def test_resume_without_a_checkpoint_or_from_a_damaged_one(tmp_path, data, out):
    assert_error(train_here(data, tmp_path / 'none', '--init_from=resume'),
                 "init_from='resume' but there is no checkpoint")
    good = (out / 'last.pt').read_bytes()
    (out / 'last.pt').write_bytes(good[:len(good) // 2])  # truncated: a full disk, a bad copy
    best = digests(out)['best.pt']
    p = train_here(data, out, '--init_from=resume', '--max_iters=20')
    assert_error(p, f"{out / 'last.pt'} is not a readable checkpoint (truncated or corrupt",
                 'other checkpoints beside it: best.pt')
    assert digests(out)['best.pt'] == best and load_checkpoint(out / 'best.pt')['iter_num'] == 10
    p = run_here('sample.py', f'--out_dir={out}', '--ckpt=last', '--device=cpu')
    assert_error(p, 'is not a readable checkpoint')


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'garbage', 'tail'])
def test_load_checkpoint_names_a_damaged_file(tmp_path, damage):
    path = tmp_path / 'last.pt'
    save_checkpoint({'model': {'w': torch.ones(1000)}, 'model_args': {}}, path)
    good = path.read_bytes()
    path.write_bytes({'empty': b'', 'truncated': good[:len(good) // 2], 'garbage': b'not a checkpoint' * 10,
                      'tail': good[:-10]}[damage])
    with pytest.raises(ValueError, match=r'last.pt is not a readable checkpoint \(truncated or corrupt'):
        load_checkpoint(path)
    torch.save({'weights': torch.ones(3)}, path)  # a good file, but not ours
    with pytest.raises(ValueError, match="not a mini-GPT checkpoint"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------- 7: atomic writes
def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'last.pt'
    save_checkpoint({'model': {'w': torch.ones(3)}, 'model_args': {}, 'iter_num': 1}, path)

    def half_then_disk_full(obj, f):
        f.write(b'PK\x03\x04half a checkpoint')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(torch, 'save', half_then_disk_full)
    with pytest.raises(OSError, match='No space left'):
        save_checkpoint({'model': {'w': torch.zeros(3)}, 'model_args': {}, 'iter_num': 2}, path)
    assert load_checkpoint(path)['iter_num'] == 1 and os.listdir(tmp_path) == ['last.pt']  # no temporary file left


def size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_killing_the_writer_mid_save_leaves_a_readable_checkpoint(tmp_path):
    path = tmp_path / 'last.pt'
    writer = (f"import sys, torch; sys.path.insert(0, {str(REPO)!r}); from common import save_checkpoint\n"
              f"for i in range(1000):\n"
              f"    save_checkpoint({{'model': {{'w': torch.full((4_000_000,), float(i))}}, 'model_args': {{}}, "
              f"'iter_num': i}}, {str(path)!r})")  # 16 MB each: a write takes a while
    p = subprocess.Popen([sys.executable, '-c', writer])
    while p.poll() is None and not (path.exists() and any(size(t) > 0 for t in tmp_path.glob('last.pt.tmp*'))):
        time.sleep(0.001)
    p.kill()  # SIGKILL while the next checkpoint is half written
    assert p.wait() == -signal.SIGKILL
    ckpt = load_checkpoint(path)
    assert (ckpt['model']['w'] == ckpt['iter_num']).all()  # a whole checkpoint, one save's content


# ----------------------------------------------------------------------------- 8, 9: exact resume after kill / signal
def test_kill_9_then_resume_continues_the_same_curve(tmp_path, data, straight):
    out = tmp_path / 'out'
    p = start(data, out, *CURVE)
    read_until(p, r'eval +10 ')  # last.pt of iter 10 is written before this line is printed
    p.kill()
    assert p.wait() == -signal.SIGKILL  # killed mid-run, not finished
    k = load_checkpoint(out / 'last.pt')['iter_num']
    assert 10 <= k < 100
    resumed = evals(train(data, out, *CURVE, '--init_from=resume', check=True).stdout)
    assert resumed == [e for e in straight if int(e[0]) >= k]  # model, optimizer, RNGs, data position, LR step
    rows = list(csv.DictReader(open(out / 'evals.csv')))  # one curve: each eval once, the resumed one too
    assert [int(r['iter']) for r in rows] == list(range(0, 101, 10))
    assert [float(r['val_loss']) for r in rows] == pytest.approx([float(e[2]) for e in straight], abs=6e-5)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_and_says_how_to_resume(tmp_path, data, straight, signum):
    out = tmp_path / 'out'
    p = start(data, out, *CURVE)
    read_until(p, r'eval +10 ')
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 128 + signum, stderr  # 143 for SIGTERM, 130 for Ctrl-C
    m = re.search(r'stopped at iter (\d+): saved (\S+); resume with: (python .*--init_from=resume)\n', stdout)
    n = int(m[1])
    assert 10 < n < 100 and m[2] == str(out / 'last.pt') and load_checkpoint(out / 'last.pt')['iter_num'] == n
    if signum == signal.SIGTERM:  # the printed command continues the same curve
        resumed = subprocess.run([sys.executable, *shlex.split(m[3])[1:]], cwd=REPO, env=script_env(),
                                 capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert evals(resumed.stdout) == [e for e in straight if int(e[0]) >= n]


# ----------------------------------------------------------------------------- 10: non-finite loss
def test_a_non_finite_loss_stops_without_saving(data, out):
    before = digests(out)
    p = train(data, out, '--init_from=resume', '--max_iters=20', '--eval_interval=5', '--learning_rate=1e30')
    assert_error(p, 'non-finite loss or gradient at iter 11: stopped, nothing saved', '--nan_policy=skip')
    assert digests(out) == before


@pytest.mark.parametrize('eval_interval,message', [
    (100, '10 steps in a row with a non-finite loss or gradient, up to iter 20'),
    (12, 'the eval loss is not finite at iter 12'),  # a diverged model is never saved as last.pt or best.pt
])
def test_skip_policy_counts_skipped_steps_and_never_saves_a_diverged_model(data, out, eval_interval, message):
    before = digests(out)
    p = train(data, out, '--init_from=resume', '--max_iters=40', f'--eval_interval={eval_interval}',
              '--learning_rate=1e30', '--nan_policy=skip')
    assert 'iter 11: non-finite loss or gradient (loss nan' in p.stdout and 'step skipped, 1 so far' in p.stdout
    assert_error(p, message)
    assert digests(out) == before


# ----------------------------------------------------------------------------- 11: out_dir
def test_unwritable_out_dir_fails_before_training(tmp_path, data):
    (tmp_path / 'file').write_text('')
    p = train_here(data, tmp_path / 'file' / 'out')  # root can write anywhere, but not below a regular file
    assert_error(p, f"out_dir '{tmp_path / 'file' / 'out'}' is not writable (Not a directory)")


def test_too_little_disk_space_fails_before_training(tmp_path, data):
    small = tmp_path / 'small'
    small.mkdir()
    mount = ['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(small)]
    if not shutil.which('mount') or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip('cannot mount a 64 kB tmpfs here (needs root)')
    try:
        p = train_here(data, small / 'out')
        assert_error(p, f"out_dir '{small / 'out'}' has 0.", "MB free; this model's checkpoints need",
                     'free some space or choose another out_dir')
    finally:
        subprocess.run(['umount', str(small)], check=True)


# ----------------------------------------------------------------------------- 13, 14: loading checkpoints
def test_a_compiled_ddp_checkpoint_loads_in_sample_and_resume(data, out):
    ckpt = load_checkpoint(out / 'last.pt')
    ckpt['model'] = {f'module._orig_mod.{k}': v for k, v in ckpt['model'].items()}  # DDP around torch.compile
    save_checkpoint(ckpt, out / 'last.pt')
    p = run_here('sample.py', f'--out_dir={out}', '--ckpt=last', '--device=cpu', '--num_samples=1',
                 '--max_new_tokens=5')
    assert p.stdout.startswith('---------- sample 1/1')
    p = train(data, out, '--init_from=resume', '--eval_only=True', '--max_iters=10', check=True)
    assert evals(p.stdout) == evals((out / 'train.log').read_text())[-1:]  # the same model: the same loss


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path, capfd):
    class Payload:
        def __reduce__(self):  # unpickling calls print('payload ran'); it could as well be os.system
            return print, ('payload ran',)
    torch.save({'model': {}, 'model_args': {}, 'extra': Payload()}, tmp_path / 'downloaded.pt')
    with pytest.raises(ValueError, match='python objects other than tensors and plain values.*refused'):
        load_checkpoint(tmp_path / 'downloaded.pt')
    assert 'payload ran' not in capfd.readouterr().out


def test_only_load_checkpoint_unpickles_and_meta_files_are_json():
    files = [*REPO.glob('*.py'), *REPO.glob('data/**/*.py'), *REPO.glob('config/**/*.py')]
    sources = {p.relative_to(REPO).as_posix(): p.read_text() for p in files}
    assert [p for p, text in sources.items() if 'torch.load(' in text] == ['common.py']
    for path, text in sources.items():
        for unsafe in ('weights_only=False', 'allow_pickle=True', 'import pickle', 'np.load('):
            assert unsafe not in text, f"{path}: {unsafe}"
    assert "json.load(f)" in sources['data/common.py']  # load_meta: meta.json is JSON


@pytest.mark.parametrize('optim', ['muon', 'adamw'])
def test_a_resumed_run_steps_with_this_devices_kernels_not_its_writers(tmp_path, data, straight, optim):
    """A checkpoint's optimizer groups say what its writer ran: fused AdamW on a GPU, capturable under cuda_graph.
    Resumed on another device, the run takes back its own kernels (a CPU's, here), and the curve goes on."""
    out = tmp_path / 'out'
    train(data, out, *CURVE, f'--optim={optim}', '--max_iters=30', check=True)  # last.pt at 30, the schedule of 100
    ckpt = load_checkpoint(out / 'last.pt')
    for group in ckpt['optimizer']['param_groups']:
        group.update(fused=True, capturable=True)  # as a CUDA run wrote them
    torch.save(ckpt, out / 'last.pt')
    resumed = evals(train(data, out, *CURVE, f'--optim={optim}', '--init_from=resume', check=True).stdout)
    assert all(not g['fused'] and not g['capturable']
               for g in load_checkpoint(out / 'last.pt')['optimizer']['param_groups'])
    if optim == 'adamw':  # straight's optimizer (TINY's)
        assert resumed == [e for e in straight if int(e[0]) >= 30]
