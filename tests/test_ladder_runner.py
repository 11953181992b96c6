"""ladder.py: trains each (rung, seed) once, tables the mean ± std of the runs, resumes without redoing runs, goes on
past a failing run; the side-branch configs change only what they test."""
import json
import re
import shutil
import statistics

import numpy as np
import pytest

from configurator import parse_config
from conftest import REPO, csv_rows, run, run_here
from model import GPT, GPTConfig, model_config

RUNGS = ['01_bigram', 'names_01_bigram']


def fake_dataset(root, name, vocab, n_train=3000, n_val=600):
    """Random char tokens, as data/<name>/prepare.py would lay them out."""
    d = root / name
    d.mkdir(parents=True)
    ids = np.random.default_rng(0).integers(0, vocab, n_train + n_val).astype(np.uint16)
    ids[:n_train].tofile(d / 'train.bin')
    ids[n_train:].tofile(d / 'val.bin')
    meta = {'tokenizer': 'char', 'chars': [chr(65 + i) for i in range(vocab)], 'vocab_size': vocab,
            'dtype': 'uint16', 'train_tokens': n_train, 'val_tokens': n_val}
    (d / 'meta.json').write_text(json.dumps(meta))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    fake_dataset(root, 'shakespeare_char', 65)
    fake_dataset(root, 'names', 27)
    return root


def ladder(out, data, *more, check=True):
    """ladder.py on the tiny rungs: 2 steps of 8 x 16 tokens, each run a few seconds (mostly python's start)."""
    return run('ladder.py', f'--rungs={",".join(RUNGS)}', '--tokens=256', '--evals=2', '--eval_iters=1', '--procs=2',
               '--device=cpu', f'--out={out}', f'--args=--data_dir={data} --batch_size=8 --block_size=16', *more,
               check=check)


def table_rows(text):
    """{rung: [cells]} of the table in ladder.md's text (or in what ladder.py printed)."""
    return {m[1]: m[2].split(' | ') for m in re.finditer(r'^\| `(\S+)` \| (.+) \|$', text, re.M)}


def mean_std(cell):
    mean, std = cell.replace(',', '').split(' ± ')
    return float(mean), float(std)


@pytest.fixture(scope='module')
def two_seeds(tmp_path_factory, data):
    out = tmp_path_factory.mktemp('ladder') / 'out'
    return out, ladder(out, data, '--seeds=2')


def test_each_rung_and_seed_trains_once_and_the_table_is_their_mean_and_std(two_seeds):
    out, p = two_seeds
    assert '\r' not in p.stdout + p.stderr  # no progress bar's carriage returns in a log: a line per finished run
    assert re.search(r'^done 1/\d+: ', p.stdout, re.M)
    rows = csv_rows(out / 'results.csv')
    assert sorted((r['rung'], r['seed']) for r in rows) == sorted((r, s) for r in RUNGS for s in '12')
    for r in rows:  # each row is its run's own, and each run trained the budget once
        own = csv_rows(out / r['rung'] / f"seed{r['seed']}" / 'results.csv')
        assert len(own) == 1 and r['val_bpb'] == own[0]['val_bpb'] and r['best_val_bpb'] == own[0]['best_val_bpb']
        assert int(r['tokens']) == 256 and f"--seed={r['seed']}" in own[0]['overrides']
    table = table_rows((out / 'ladder.md').read_text())
    assert list(table) == RUNGS and table == table_rows(p.stdout)  # printed as written
    for rung, cells in table.items():
        runs = [r for r in rows if r['rung'] == rung]
        assert cells[1] == '2' and int(cells[2].replace(',', '')) == int(runs[0]['params'])
        for cell, key, digits in ((3, 'val_bpb', 4), (4, 'best_val_bpb', 4), (5, 'val_acc', 4),
                                  (6, 'tokens_per_sec', 0)):
            values = [float(r[key]) for r in runs]
            mean, std = mean_std(cells[cell])
            assert mean == pytest.approx(statistics.mean(values), abs=0.51 * 10 ** -digits), (rung, key)
            assert std == pytest.approx(statistics.stdev(values), abs=0.51 * 10 ** -digits), (rung, key)


def test_a_second_call_trains_nothing_again_a_new_seed_only_its_runs_and_a_failing_run_stops_no_other(
        two_seeds, data, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(two_seeds[0], out)
    ckpt = out / '01_bigram' / 'seed1' / 'last.pt'
    before = ckpt.stat().st_mtime_ns
    p = ladder(out, data, '--seeds=2')
    assert '| 0 to train, skipped 4 already in' in p.stdout
    assert ckpt.stat().st_mtime_ns == before and len(csv_rows(out / 'results.csv')) == 4
    # seed 3, with names' val.bin shorter than a block: train.py stops with an error for the names rung alone
    bad = tmp_path / 'data'
    shutil.copytree(data, bad)
    fake_dataset(tmp_path / 'short', 'names', 27, n_val=10)
    for f in ('val.bin', 'meta.json'):
        shutil.copy(tmp_path / 'short' / 'names' / f, bad / 'names' / f)
    p = ladder(out, bad, '--seeds=3', check=False)
    assert '| 2 to train, skipped 4 already in' in p.stdout and p.returncode == 1
    assert re.search(r"failed: names_01_bigram seed 3 \(exit 1\).*\n.*error: val.bin of 'names' holds 10 tokens",
                     p.stderr)
    assert '1 of 2 runs failed: names_01_bigram seed 3 (exit 1)' in p.stderr
    rows = csv_rows(out / 'results.csv')
    assert sorted((r['rung'], r['seed']) for r in rows) == sorted([(r, s) for r in RUNGS for s in '12']
                                                                  + [('01_bigram', '3')])
    assert ckpt.stat().st_mtime_ns == before
    assert all(len(csv_rows(out / r / f'seed{s}' / 'results.csv')) == 1 for r in RUNGS for s in (1, 2))
    assert [cells[1] for cells in table_rows((out / 'ladder.md').read_text()).values()] == ['3', '2']


def test_unprepared_datasets_are_named_with_their_prepare_commands_before_anything_runs(tmp_path):
    p = run('ladder.py', '--rungs=01_bigram,names_02_mlp', f'--out={tmp_path / "out"}',
            f'--args=--data_dir={tmp_path}', check=False)
    assert p.returncode == 1 and not (tmp_path / 'out').exists()
    assert f"python data/shakespeare_char/prepare.py --out_dir {tmp_path}/shakespeare_char" in p.stderr
    assert f"python data/names/prepare.py --out_dir {tmp_path}/names" in p.stderr


SIDE = sorted((REPO / 'config' / 'ladder' / 'side').glob('*.py'))
TESTS = {'lr': {'learning_rate'}, 'size': {'n_embd'}, 'deep': {'n_layer', 'n_embd'}, 'wide': {'n_layer', 'n_embd'},
         'pos': {'pos_emb'}}


@pytest.mark.parametrize('path', SIDE, ids=lambda p: p.stem)
def test_side_branch_changes_only_what_it_tests_with_the_param_count_it_states(path, train_defaults):
    base = parse_config(train_defaults, [str(REPO / 'config' / 'ladder' / '11_pre_ln.py')])
    config = parse_config(train_defaults, [str(path)])
    changed = {k for k in config if config[k] != base[k]} - {'out_dir'}
    assert changed <= TESTS[path.stem.split('_')[0]] and config['out_dir'] == f'out-ladder/side/{path.stem}'
    first = path.read_text().splitlines()[0]
    stated = re.search(r'\(([\d,]+) params', first)
    if stated:
        params = GPT(GPTConfig(**model_config(config, 65))).get_num_params(non_embedding=False)
        assert int(stated[1].replace(',', '')) == params, first


# ----------------------------------------------------------------------------- the branches (issue 25)
def rung_config(train_defaults, rung, *overrides):
    return parse_config(train_defaults, [str(REPO / 'config' / 'ladder' / f'{rung}.py'), *overrides])


def write_finished(out, runs):
    """results.csv in out with (rung, seed, tokens, val bpb) runs, as if ladder.py had trained them."""
    out.mkdir()
    with open(out / 'results.csv', 'w') as f:
        f.write('rung,seed,params,tokens,val_loss,val_acc,val_bpb,best_val_loss,best_val_bpb,tokens_per_sec,seconds,'
                'device\n' + ''.join(f"{r},{s},1,{t},1,0.5,{bpb},1,{bpb},1,1,cpu\n" for r, s, t, bpb in runs))


def test_the_scaling_branch_fits_the_power_law_its_runs_follow(tmp_path, train_defaults):
    """Runs already in results.csv are not trained again: given the val bpb of an exact L(N) = E + A N^-alpha (two
    seeds a size, +-0.001 apart), the scaling branch's report finds alpha and E, with N the sizes' non-embedding
    parameters, and predicts the largest size from the others."""
    fake_dataset(tmp_path, 'plays', 76)
    sizes = ['s1_2x64', 's2_3x96', 's3_4x128', 's4_5x192', 's5_6x256', 's6_8x384']
    out = tmp_path / 'out'
    runs = []
    for name in sizes:
        n = GPT(GPTConfig(**model_config(rung_config(train_defaults, f'scaling/{name}'), 76))).get_num_params()
        for seed, noise in ((1, -1e-3), (2, 1e-3)):
            runs.append((f'scaling/{name}', seed, 4096, 1.2 + 30 * n ** -0.3 + noise))
    write_finished(out, runs)
    p = run_here('ladder.py', '--branch=scaling', '--seeds=2', '--tokens=4096', f'--out={out}', '--device=cpu',
                 f'--args=--data_dir={tmp_path}')
    assert '0 to train' in p.stdout
    m = re.search(r'alpha = ([\d.]+) ± ([\d.]+), E = ([\d.]+) ± ([\d.]+) bits per byte', p.stdout)
    assert float(m[1]) == pytest.approx(0.3, abs=0.02) and float(m[3]) == pytest.approx(1.2, abs=0.02)
    predicted, measured = map(float, re.search(r'predicts (\d+\.\d+) for it; it measured (\d+\.\d+)',
                                               p.stdout).groups())
    assert predicted == pytest.approx(measured, abs=0.005)
    assert (out / 'ladder.md').read_text().count('| `scaling/') == 12  # the ladder's table, then the fit's


def test_the_tokenizer_branch_gives_every_rung_the_same_flops(tmp_path, train_defaults):
    """--flops: each rung trains the whole steps that fit its FLOPs per token (the output layer grows with the
    vocabulary). Runs in results.csv with exactly those tokens count as done (any other count stops the call), and the
    tokenizer table gives each rung's vocabulary and bytes per token on val, in order of vocabulary."""
    vocabs = (1025, 257, 513)  # the rungs' order by name: not by vocabulary
    for vocab in vocabs:
        fake_dataset(tmp_path, f'plays_bpe{vocab - 1}', vocab)
    rungs, out = ['tokenizer/bpe1024', 'tokenizer/bpe256', 'tokenizer/bpe512'], tmp_path / 'out'
    tokens = []
    for rung, vocab in zip(rungs, vocabs):
        s = rung_config(train_defaults, rung, f'--data_dir={tmp_path}')
        per_step = s['batch_size'] * s['block_size']
        tokens.append(int(1e11 // (GPT(GPTConfig(**model_config(s, vocab))).flops_per_token() * per_step)) * per_step)
    assert tokens[1] > tokens[2] > tokens[0] > 0  # the bigger vocabulary: fewer tokens for the same FLOPs
    write_finished(out, [(rung, 1, t, 2) for rung, t in zip(rungs, tokens)])
    p = run_here('ladder.py', '--branch=tokenizer', f'--rungs={",".join(rungs)}', '--seeds=1', '--flops=1e11',
                 '--device=cpu', f'--out={out}', f'--args=--data_dir={tmp_path}')
    assert '0 to train' in p.stdout
    report = (out / 'ladder.md').read_text()
    cells = table_rows(report)
    assert [cells[r][0] for r in rungs] == ['1,025', '257', '513']  # the tokenizer table (last): vocabulary, ...
    tokenizer_table = report[report.index('| rung | vocabulary'):]
    assert re.findall(r'^\| `(tokenizer/\w+)`', tokenizer_table, re.M) == [
        'tokenizer/bpe256', 'tokenizer/bpe512', 'tokenizer/bpe1024']
    assert 1 <= float(cells['tokenizer/bpe256'][1]) <= 2  # the fake characters are 1 or 2 bytes each
    p = run_here('ladder.py', '--branch=tokenizer', f'--rungs={",".join(rungs)}', '--seeds=1', '--flops=2e11',
                 '--device=cpu', f'--out={out}', f'--args=--data_dir={tmp_path}')
    assert p.returncode != 0 and 'use another --out, or the same --tokens (--flops)' in p.stderr
