"""End to end through the command line: prepare, train, resume, sample, in a temporary directory."""
import csv
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY, run, run_here, script_env
from model import GPT, GPTConfig, clean_state_dict


def evals(stdout):
    return re.findall(r'eval +(\d+) \| train ([\d.]+) \| val ([\d.]+)', stdout)


def test_train_resume_sample(tmp_path, char_data):
    out = tmp_path / 'out'
    common = [*TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--eval_interval=5', '--lr_decay_iters=20']
    p = run('train.py', *common, '--max_iters=10')
    assert re.search(r'done 10 iters \| best val [\d.]+ \| [\d.]+ s training', p.stdout)
    assert (out / 'last.pt').exists() and (out / 'best.pt').exists()
    first = evals(p.stdout)
    assert [e[0] for e in first] == ['0', '5', '10']
    assert float(first[-1][2]) < float(first[0][2])  # it learns

    # the checkpoint is plain tensors and python values, and holds the trained weights
    ckpt = torch.load(out / 'last.pt', weights_only=True)
    assert ckpt['iter_num'] == 10 and ckpt['tokenizer']['tokenizer'] == 'char' and ckpt['config']['max_iters'] == 10
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(clean_state_dict(ckpt['model']))

    # resume from 10 to 20: the curve continues exactly as a straight 20-iteration run
    p = run('train.py', *common, '--max_iters=20', '--init_from=resume')
    resumed = evals(p.stdout)
    straight = evals(run('train.py', *common, '--max_iters=20', f'--out_dir={tmp_path / "straight"}').stdout)
    assert resumed[-1][0] == '20' and resumed[-1] == straight[-1]
    assert resumed[-2] == straight[-2]  # iteration 15

    rows = list(csv.DictReader(open(out / 'results.csv')))
    assert [r['iters'] for r in rows] == ['10', '20']
    assert rows[0]['config'] == 'default' and '--max_iters=10' in rows[0]['overrides']

    p = run_here('sample.py', f'--out_dir={out}', '--start=First', '--num_samples=2', '--max_new_tokens=30',
                 '--device=cpu')
    samples = [s.strip('\n') for s in re.split(r'-+ sample \d/2 -+\n', p.stdout)[1:]]
    assert len(samples) == 2
    for s in samples:
        assert s.startswith('First') and len(s.split('\n----------')[0]) == len('First') + 30

    p = run_here('sample.py', f'--out_dir={out}', '--start=First~', '--device=cpu')
    assert p.returncode != 0 and "'~'" in p.stderr


def test_eval_only_from_checkpoint_reproduces_the_trained_loss(tmp_path, char_data):
    """Evaluation uses fixed batches: reloading the checkpoint gives exactly the loss printed in training."""
    out = tmp_path / 'out'
    common = [*TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--eval_interval=6']
    trained = evals(run('train.py', *common, '--max_iters=6').stdout)[-1]
    reloaded = evals(run('train.py', *common, '--max_iters=6', '--init_from=resume', '--eval_only=True').stdout)
    assert reloaded == [trained]


def test_missing_dataset_and_checkpoint_are_clear_errors(tmp_path):
    p = run_here('train.py', *TINY, f'--data_dir={tmp_path}')  # the exact command that prepares it there
    where = tmp_path / 'shakespeare_char'
    assert p.returncode != 0 and p.stderr == (f"error: dataset 'shakespeare_char' is not prepared in {where} (no "
                                              f"meta.json); run: python data/shakespeare_char/prepare.py --out_dir "
                                              f"{where}\n")
    p = run_here('train.py', *TINY, f'--data_dir={tmp_path}', '--dataset=shakespear_char')  # a typo
    assert p.returncode != 0 and 'no data/shakespear_char/prepare.py to prepare it' in p.stderr
    assert 'shakespeare_char' in p.stderr.split('(datasets: ')[1]
    p = run_here('sample.py', f'--out_dir={tmp_path}')
    assert p.returncode != 0 and 'no checkpoint' in p.stderr


def test_space_separated_override_is_recorded_as_an_override(tmp_path, char_data):
    out = tmp_path / 'out'
    run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--max_iters', '2', '--eval_interval', '2')
    row = list(csv.DictReader(open(out / 'results.csv')))[0]
    assert row['config'] == 'default' and '--max_iters=2' in row['overrides'].split()  # it was recorded as config '2'


def test_sample_without_out_dir_takes_out_not_the_latest_trained_model(tmp_path, char_data):
    """Each config writes its own out_dir; sample.py with no --out_dir takes out/ (a plain `python train.py`'s), even
    when another was trained after it, and says which; without out/, the error names those that have a checkpoint."""
    for name in ('out-first', 'out-ladder/08_residual'):
        run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={name}', '--max_iters=2', '--eval_interval=2',
            cwd=tmp_path)
    args = ['--num_samples=1', '--max_new_tokens=3', '--device=cpu']
    p = run_here('sample.py', *args, cwd=tmp_path)
    assert p.returncode == 1 and p.stderr == ("error: no checkpoint at out/best.pt; these hold a best.pt: out-first, "
                                              "out-ladder/08_residual (pass one with --out_dir=...)\n")
    (tmp_path / 'out-first').rename(tmp_path / 'out')
    os.utime(tmp_path / 'out-ladder' / '08_residual' / 'best.pt')  # the latest checkpoint written here: not taken
    p = run_here('sample.py', *args, cwd=tmp_path)
    assert re.fullmatch(r'sampling from out/best\.pt \(iter 2, best val loss [\d.]+\)\n', p.stderr)
    p = run_here('sample.py', *args, '--out_dir=out-ladder/08_residual', '--ckpt=last', cwd=tmp_path)
    assert p.stderr.startswith('sampling from out-ladder/08_residual/last.pt (iter 2, ')
    p = run_here('sample.py', *args, cwd=tmp_path / 'out')
    assert p.returncode == 1 and 'train one first (python train.py)' in p.stderr


def test_every_config_has_its_own_out_dir():
    configs = [p for p in REPO.glob('config/**/*.py')  # size presets go after a config; _*.py: a ladder branch's
               if 'sizes' not in p.parts and not p.name.startswith('_')]  # shared settings
    dirs = {}
    for path in configs:
        ns = {'__file__': str(path)}
        exec(path.read_text(), ns)
        dirs.setdefault(ns.get('out_dir', 'out'), []).append(path.name)
    assert 'out' not in dirs and all(len(names) == 1 for names in dirs.values()), dirs  # out/ is the default run's


def test_user_facing_text_names_no_file_a_user_cannot_get():
    texts = [REPO / 'README.md', *REPO.glob('docs/*.md'), *REPO.glob('*.py'), *REPO.glob('data/**/*.py'),
             *REPO.glob('config/**/*.py'), REPO / 'Makefile']
    assert [p.name for p in texts if '../shared' in p.read_text() or 'shared/data' in p.read_text()] == []


def test_make_clean_removes_every_out_dir(tmp_path):
    for d in ('out', 'out-names', 'out-ladder/08_residual', 'keep'):
        (tmp_path / d).mkdir(parents=True)
    subprocess.run(['make', '-f', str(REPO / 'Makefile'), 'clean', 'VENV=.venv'], cwd=tmp_path, check=True,
                   capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['keep']


def test_the_rate_leaves_out_the_first_step(tmp_path, char_data):
    """The first step compiles (a minute on a GPU): log lines, and results.csv's tokens/s, time the steps after it,
    never that one."""
    args = [*TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--max_iters=4', '--log_interval=2']
    code = (f"import runpy, sys, time\nsys.path.insert(0, {str(REPO)!r})\nimport model\n"
            f"forward, slept = model.GPT.forward, []\n"
            f"def slow_first_step(self, idx, targets=None):\n"
            f"    if self.training and not slept:  # the first training step, as if it compiled for 2 s\n"
            f"        slept.append(time.sleep(2))\n"
            f"    return forward(self, idx, targets)\n"
            f"model.GPT.forward = slow_first_step\n"
            f"sys.argv = ['train.py', *{args!r}]\n"
            f"runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')\n")
    p = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=script_env(), capture_output=True, text=True)
    ms = [float(m) for m in re.findall(r'\| ([\d.]+) ms/iter', p.stdout)]
    assert p.returncode == 0 and len(ms) == 2, p.stderr
    assert max(ms) < 500  # with the first step in it, the first line would say at least 1000 ms/iter
    row = list(csv.DictReader(open(tmp_path / 'results.csv')))[-1]
    assert float(row['tokens_per_sec']) > int(row['tokens']) / 2  # the whole run took more than the 2 s slept


def test_every_eval_goes_to_evals_csv_and_bits_per_byte_of_ascii_chars_is_loss_over_ln2(tmp_path, char_data):
    out = tmp_path / 'out'
    p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={out}', '--max_iters=4', '--eval_interval=2')
    rows = list(csv.DictReader(open(out / 'evals.csv')))
    assert [int(r['iter']) for r in rows] == [0, 2, 4] and [int(r['tokens']) for r in rows] == [0, 256, 512]
    for r in rows:  # one byte per character: bits per byte are bits per token
        for split in ('train', 'val'):
            assert float(r[f'{split}_bpb']) == pytest.approx(float(r[f'{split}_loss']) / math.log(2), abs=2e-5)
            assert 0 <= float(r[f'{split}_acc']) <= 1
    result = list(csv.DictReader(open(out / 'results.csv')))[-1]
    last = rows[-1]
    for key in ('val_loss', 'val_acc', 'val_bpb'):  # results.csv: the figures at the end of the budget
        assert float(result[key]) == pytest.approx(float(last[key]), abs=6e-5)
    assert re.search(r'eval +4 \| .* \| val acc [\d.]+ \| val bpb [\d.]+ \| [\d.]+ s', p.stdout)


def test_trace_prints_the_stages_of_the_real_model_and_writes_nothing(tmp_path, char_data):
    p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path / "out"}', '--trace=True',
            '--pos_emb=rope', '--n_kv_head=1')
    assert re.search(r'^block 1 attn k +\(2, 1, 8, 16\) +1 heads of 16, rotated by position', p.stdout, re.M)
    assert re.search(r'^loss +\(\) +cross-entropy [\d.]+ nats', p.stdout, re.M) and 'gradients' in p.stdout
    assert not (tmp_path / 'out').exists()


def test_grad_norms_logs_every_block_at_every_log_line(tmp_path, char_data):
    run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--max_iters=10', '--eval_interval=10',
        '--grad_norms=True')
    rows = list(csv.DictReader(open(tmp_path / 'grad_norms.csv')))
    assert [int(r['iter']) for r in rows] == [5, 10]  # log_interval=5
    assert list(rows[0]) == ['iter', 'embeddings', 'block_0', 'block_1', 'head']
    assert all(0 < float(v) < 1e3 for r in rows for k, v in r.items() if k != 'iter')


def test_eval_at_start_false_skips_only_the_eval_before_the_first_step(tmp_path, char_data):
    p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--max_iters=10',
            '--eval_interval=5', '--eval_at_start=False')
    assert [e[0] for e in evals(p.stdout)] == ['5', '10']
