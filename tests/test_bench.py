"""bench.py: it times the model train.py would build, and every figure it prints follows from the others."""
import json
import re

import pytest

from conftest import REPO, run, script_keys
from model import GPT, GPTConfig
from test_ladder import rung

TINY = ['--device=cpu', '--n_layer=1', '--n_embd=32', '--n_head=2', '--block_size=16', '--batch_size=4']


def test_model_keys_have_train_py_defaults(train_defaults):
    bench, train = script_keys('bench.py'), train_defaults
    shared = [k for k in train if k in bench and k not in ('learning_rate', 'out_dir')]
    assert {'n_layer', 'n_embd', 'block_size', 'batch_size', 'vocab_size', 'dataset', 'data_dir', 'bias'} <= set(shared)
    assert {k: bench[k] for k in shared} == {k: train[k] for k in shared}


def test_a_bpe_rung_is_timed_at_its_real_size(tmp_path, train_defaults):
    """The vocabulary comes from the dataset: GPT-2's 50,257 tokens when it is not prepared (it was 65)."""
    path = REPO / 'config' / 'ladder' / '13_gpt2_bpe.py'
    p = run('bench.py', path, '--device=cpu', '--steps=1', '--warmup_steps=0', '--batch_size=1',
            f'--data_dir={tmp_path}')
    _, model = rung(path, train_defaults)
    assert f"model: {model.config} (random init, vocabulary from the default of data/shakespeare/prepare.py" in p.stdout
    assert 'train | 13,661,568 params |' in p.stdout  # the README's count for rung 13

    d = tmp_path / 'shakespeare'
    d.mkdir()
    (d / 'meta.json').write_text(json.dumps({'vocab_size': 100}))  # a prepared dataset's vocabulary wins
    p = run('bench.py', path, '--device=cpu', '--steps=1', '--warmup_steps=0', '--batch_size=1',
            f'--data_dir={tmp_path}', '--n_layer=1')
    assert 'vocab_size=100' in p.stdout and f"vocabulary from {d / 'meta.json'}" in p.stdout


def test_train_line_arithmetic_and_no_warmup():
    p = run('bench.py', *TINY, '--steps=3', '--warmup_steps=0', '--device_peak_flops=1e10')  # warmup 0 used to crash
    m = re.search(r'train \| ([\d,]+) params \| ([\d,]+) FLOPs/token \| .* \| ([\d.]+) ms/iter \| ([\d,]+) tok/s '
                  r'\| mfu ([\d.]+)%', p.stdout)
    params, flops, ms, tok_s, mfu = (float(g.replace(',', '')) for g in m.groups())
    model = GPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=16, vocab_size=65, bias=False))
    assert params == model.get_num_params(non_embedding=False) and flops == model.flops_per_token()
    assert tok_s == pytest.approx(4 * 16 / (ms / 1000), rel=1e-3)
    assert mfu == pytest.approx(100 * flops * tok_s / 1e10, abs=0.006)
    p = run('bench.py', *TINY, '--steps=0', check=False)
    assert p.returncode == 1 and p.stderr.startswith('error: steps must be >= 1')


def test_sample_gains_are_the_ratios_of_the_times_printed():
    p = run('bench.py', *TINY, '--bench=sample', '--num_samples=2', '--max_new_tokens=40')
    seconds = [float(s) for s in re.findall(r'2 x 40 tokens in ([\d.]+) s', p.stdout)]
    batching, cache = (float(x) for x in re.search(r'batching ([\d.]+)x .* KV cache ([\d.]+)x', p.stdout).groups())
    assert len(seconds) == 3
    assert batching == pytest.approx(seconds[0] / seconds[1], rel=0.01, abs=0.006)  # one after another vs batched
    assert cache == pytest.approx(seconds[1] / seconds[2], rel=0.01, abs=0.006)  # batched: uncached vs cached
