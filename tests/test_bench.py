"""bench.py: it times the model train.py would build, and every figure it prints follows from the others."""
import json
import os
import re

import pytest

from conftest import REPO, run, run_here, script_keys
from configurator import parse_config
from model import GPT, GPTConfig
from optim import NEWTON_SCHULZ
from test_ladder import rung

TINY = ['--device=cpu', '--n_layer=1', '--n_embd=32', '--n_head=2', '--block_size=16', '--batch_size=4']


def test_model_keys_have_train_py_defaults(train_defaults):
    bench, train = script_keys('bench.py'), train_defaults
    shared = [k for k in train if k in bench and k not in ('learning_rate', 'out_dir')]
    assert {'n_layer', 'n_embd', 'block_size', 'batch_size', 'vocab_size', 'dataset', 'data_dir', 'bias'} <= set(shared)
    assert {k: bench[k] for k in shared} == {k: train[k] for k in shared}


def test_bench_reads_every_config_in_config(train_defaults):
    """bench.py takes any training config: the keys only training has (evals, schedule, EMA, ...) are skipped."""
    bench = script_keys('bench.py')
    train_only = [k for k in train_defaults if k not in bench]  # bench.py skips every train.py key it has not
    assert {'max_iters', 'eval_interval', 'ema_decay', 'warmup_iters'} <= set(train_only)
    for path in sorted((REPO / 'config').rglob('*.py')):
        if not path.name.startswith('_'):  # a ladder branch's shared settings (_branch.py, _recipe.py): not a config
            parse_config(bench, [str(path)], train_only)  # a ConfigError names a key bench.py does not know


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


def test_train_line_arithmetic_and_no_warmup(tmp_path):  # tmp_path: no prepared data, the default 65 characters
    p = run('bench.py', *TINY, '--steps=3', '--warmup_steps=0', '--device_peak_flops=1e10',  # warmup 0 used to crash
            f'--data_dir={tmp_path}')
    m = re.search(r'train \| ([\d,]+) params \| ([\d,]+) FLOPs/token \| .* \| ([\d.]+) ms/iter \| ([\d,]+) tok/s '
                  r'\| mfu ([\d.]+)%', p.stdout)
    params, flops, ms, tok_s, mfu = (float(g.replace(',', '')) for g in m.groups())
    assert 'warm-up: 0 untimed steps' in p.stdout and 'timing: 1 x 1 x 3 steps' in p.stdout  # no silent minute
    model = GPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, block_size=16, vocab_size=65, bias=False))
    assert params == model.get_num_params(non_embedding=False) and flops == model.flops_per_token()
    assert tok_s == pytest.approx(4 * 16 / (ms / 1000), rel=1e-3 + 0.005 / ms)  # ms is printed to 0.01
    assert mfu == pytest.approx(100 * flops * tok_s / 1e10, abs=0.006)
    p = run_here('bench.py', *TINY, '--steps=0')
    assert p.returncode == 1 and p.stderr.startswith('error: steps must be >= 1')


def test_sample_gains_are_the_ratios_of_the_times_printed():
    p = run('bench.py', *TINY, '--bench=sample', '--num_samples=2', '--max_new_tokens=40')
    seconds = [float(s) for s in re.findall(r'2 x 40 tokens in ([\d.]+) s', p.stdout)]
    batching, cache = (float(x) for x in re.search(r'batching ([\d.]+)x .* KV cache ([\d.]+)x', p.stdout).groups())
    assert len(seconds) == 3
    assert batching == pytest.approx(seconds[0] / seconds[1], rel=0.01, abs=0.006)  # one after another vs batched
    assert cache == pytest.approx(seconds[1] / seconds[2], rel=0.01, abs=0.006)  # batched: uncached vs cached


def test_profile_figures_are_per_recorded_step(tmp_path):
    """--profile: each figure is the total over the 3 recorded steps / 3 (checked against the trace it writes), the
    percentages are shares of the step's total, and the categories add up to it."""
    p = run('bench.py', *TINY, '--steps=1', '--warmup_steps=0', '--profile=True', f'--profile_dir={tmp_path}')
    total = float(re.search(r'profile \| 3 steps recorded .* \| CPU time ([\d.]+) ms/step', p.stdout)[1])
    events = [e for e in json.loads((tmp_path / 'trace.json').read_text())['traceEvents'] if e.get('ph') == 'X']
    steps = [e['dur'] for e in events if e['name'].startswith('ProfilerStep#')]
    assert len(steps) == 3 and total == pytest.approx(sum(steps) / 3 / 1000, abs=0.0011)  # the CPU time of a step

    rows = re.findall(r'^profile \| (.+?) +\| +([\d.]+) ms/step \| +([\d.]+)% \| ([\d.]+) calls/step$', p.stdout, re.M)
    assert len(rows) == 15 and '(outside any op: python)' in [name for name, *_ in rows]
    calls = {name: sum(e['name'] == name for e in events) for name in {e['name'] for e in events}}
    assert sum(name in calls for name, *_ in rows) >= 10 and 'aten::mm' in calls
    for name, ms, pct, per_step in rows:
        assert name not in calls or float(per_step) == pytest.approx(calls[name] / 3, abs=0.05)
        assert float(pct) == pytest.approx(100 * float(ms) / total, abs=0.06 + 0.06 / total)

    cats = dict((c, (float(ms), float(pct))) for c, ms, pct in
                re.findall(r'^profile \| (\w+) +\| +([\d.]+) ms/step \| +([\d.]+)%$', p.stdout, re.M))
    assert {'matmul', 'attention', 'optimizer', 'loss', 'other'} <= set(cats) <= {
        'attention', 'matmul', 'compiled', 'optimizer', 'loss', 'copies', 'communication', 'other'}
    assert sum(pct for _, pct in cats.values()) == pytest.approx(100, abs=0.05 * len(cats))
    assert sum(ms for ms, _ in cats.values()) == pytest.approx(total, abs=0.0005 * len(cats) + 0.0005)


def test_memory_breakdown(tmp_path):
    """Parameters and gradients: float32 bytes of the (tied) parameters; AdamW: two moments (and a 4-byte step per
    parameter); activations: twice as many for twice the batch."""
    p = run('bench.py', *TINY, '--n_embd=128', '--optim=adamw', '--steps=1', '--warmup_steps=0',
            '--compare=--batch_size=8', '--compare_rounds=1', f'--data_dir={tmp_path}')
    lines = re.findall(r'memory \| params ([\d.]+) MiB \| grads ([\d.]+) MiB \| optimizer ([\d.]+) MiB \| activations '
                       r'([\d.]+) MiB \(saved for backward, one micro-batch, eager\) \| peak n/a', p.stdout)
    assert len(lines) == 2
    (params, grads, optimizer, acts), (params_b, *_, acts_b) = [[float(x) for x in line] for line in lines]
    model = GPT(GPTConfig(n_layer=1, n_embd=128, n_head=2, block_size=16, vocab_size=65, bias=False))
    assert params == params_b == round(4 * model.get_num_params(non_embedding=False) / 2**20, 2) > 0.5
    assert grads == params and optimizer == pytest.approx(2 * params, abs=0.011)
    assert acts > 0.1 and acts_b == pytest.approx(2 * acts, rel=0.05)


def test_compare_times_both_setups_and_prints_their_ratio():
    p = run('bench.py', *TINY, '--steps=1', '--warmup_steps=1', '--compare=--attn_impl=manual --batch_size=8',
            '--compare_rounds=2')
    models = re.findall(r"^model: GPTConfig\(.*attn_impl='(\w+)'", p.stdout, re.M)
    trains = re.findall(r'^train \| .* \| ([\d.]+) ms/iter \| ([\d,]+) tok/s', p.stdout, re.M)
    assert models == ['sdpa', 'manual'] and len(trains) == 2
    (ms_a, tok_a), (ms_b, tok_b) = [(float(ms), float(tok.replace(',', ''))) for ms, tok in trains]
    assert ms_a == pytest.approx(4 * 16 * 1000 / tok_a, abs=0.0051)
    assert ms_b == pytest.approx(8 * 16 * 1000 / tok_b, abs=0.0051)  # B's own batch size
    m = re.search(r'^compare \| B vs A \| ([\d.]+)x tokens/s \| ([\d.]+) -> ([\d.]+) ms/iter \| '
                  r'B: --attn_impl=manual --batch_size=8$', p.stdout, re.M)
    assert m and float(m[1]) == pytest.approx(tok_b / tok_a, rel=2e-3, abs=0.0011)
    assert (float(m[2]), float(m[3])) == (ms_a, ms_b)
    p = run_here('bench.py', *TINY, '--compare=--n_layr=2')
    assert p.returncode == 1 and p.stderr.startswith("error: --compare: unknown config key 'n_layr'; did you mean")


def test_figures_py_reports_each_runs_own_numbers(char_data):
    """figures.py (the GPU figures of docs/benchmarks.md, re-measured) on the CPU with a tiny default run: its row holds
    the run's launch-to-done seconds, ms/iter and best val (below the untrained model's ~ln(65) = 4.17)."""
    tiny = f'--data_dir={char_data} --max_iters=10 --eval_interval=10 --eval_iters=1 --device=cpu'
    p = run('figures.py', '--only=default', '--caches=warm', f'--args={tiny}')
    rows = re.findall(r'^\| `python train.py` \(default config\), (cold|warm) \| - \| ([\d.]+) s launch to done, '
                      r'([\d.]+) ms/iter \| best val ([\d.]+) \|$', p.stdout, re.M)
    assert [r[0] for r in rows] == ['warm'] and float(rows[0][1]) > float(rows[0][2]) / 1000 > 0
    assert 1 < float(rows[0][3]) < 4.17


def test_figures_py_warm_runs_read_the_caches_their_cold_run_filled(tmp_path, char_data, monkeypatch):
    """figures.py --only=fast: nanoGPT's baby GPT cold, then warm, each beside ours. A stand-in nanoGPT (its train.py
    notes whether the compile cache and the bytecode cache it is given hold what a run before wrote there, and whether
    it may write bytecode, and reports that as its val) shows each program's warm run reading the caches that its own
    cold run filled, and the cold run empty ones; bytecode is written even where the environment said not to."""
    nano = tmp_path / 'nanoGPT'
    (nano / 'data' / 'shakespeare_char').mkdir(parents=True)
    (nano / 'bench.py').write_text('')
    (nano / 'data' / 'shakespeare_char' / 'prepare.py').write_text('')
    (nano / 'train.py').write_text(
        "import os, sys\n"
        "marks = [os.path.join(d, 'seen') for d in (os.environ['TORCHINDUCTOR_CACHE_DIR'], sys.pycache_prefix)]\n"
        "val = 1 + 0.25 * os.path.exists(marks[0]) + 0.125 * os.path.exists(marks[1])\n"
        "val += 0.0625 * sys.dont_write_bytecode\n"
        "for mark in marks:  # before the val line: figures.py stops a run at its first val <= 1.47\n"
        "    os.makedirs(os.path.dirname(mark), exist_ok=True)\n"
        "    open(mark, 'w').close()\n"
        "print(f'step 0: train loss 1.0, val loss {val}', flush=True)\n")
    tiny = (f'--data_dir={char_data} --n_layer=1 --n_head=2 --n_embd=32 --block_size=16 --batch_size=4 '
            '--max_iters=2 --lr_decay_iters=2 --eval_interval=2 --eval_iters=1 --device=cpu')
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setenv('TMPDIR', str(tmp_path / 'tmp'))  # where figures.py makes its caches and out_dirs
    monkeypatch.setenv('PYTHONDONTWRITEBYTECODE', '1')  # as on a machine whose Python keeps no bytecode
    p = run('figures.py', '--only=fast', '--seeds=1', f'--nanogpt={nano}', f'--args={tiny}')
    vals = re.findall(r"^\| nanoGPT's baby GPT: launch to val <= 1.47, (cold|warm) \| [\d.]+ s \(val ([\d.]+) at",
                      p.stdout, re.M)
    assert vals == [('cold', '1.0000'), ('warm', '1.3750')]  # cold: empty; warm: what the cold run left
    assert len(re.findall(r'^\| fast config: launch to val <= 1.47, (cold|warm), seeds 1-1', p.stdout, re.M)) == 2
    assert os.listdir(tmp_path / 'tmp') == []  # the caches and out_dirs removed at exit


def test_bench_newton_schulz_times_each_set_of_coefficients_on_the_models_muon_shapes():
    """--bench=newton_schulz: two lines per optim.NEWTON_SCHULZ entry (plain, and as Muon runs it: the Gram form for
    the wide shapes), over the shapes Muon batches for this model (1 block of 32 wide: c_attn 32 x 96, c_proj 32 x 32,
    c_fc 32 x 128 and its projection, transposed); both forms give the same; Polar Express's coefficients land nearer
    to U V^T than Muon's own, each in its stated range."""
    p = run('bench.py', *TINY, '--bench=newton_schulz', '--steps=2', '--warmup_steps=1')
    lines = re.findall(r'^newton_schulz \| (\w+) +\| (plain|as run) +\| cpu \| (.+?) \| ([\d.]+) ms \(.+\) '
                       r'\| error vs U V\^T ([\d.]+) \| singular values ([\d.]+)-([\d.]+) \(top 90%\)$', p.stdout, re.M)
    assert [line[:2] for line in lines] == [(ns, form) for ns in NEWTON_SCHULZ for form in ('plain', 'as run')]
    assert [line[2] for line in lines[:2]] == [
        '1 x 32 x 96 + 1 x 32 x 32 + 2 x 32 x 128 (plain float32, plain float32, plain float32)',
        '1 x 32 x 96 + 1 x 32 x 32 + 2 x 32 x 128 (gram float32, plain float32, gram float32)']
    error = {line[0]: float(line[4]) for line in lines}
    assert all(error[line[0]] == float(line[4]) for line in lines)  # plain and as run: the same to 3 digits
    assert error['polar_express'] < error['jordan'] < 0.5 and error['turbo'] < 0.5
    ranges = {line[0]: (float(line[5]), float(line[6])) for line in lines}
    assert 0.5 < ranges['jordan'][0] and ranges['jordan'][1] <= 1.21
    assert 0.84 <= ranges['polar_express'][0] and ranges['polar_express'][1] <= 1.15


def test_figures_py_baby_and_best_rows_hold_their_runs_numbers(char_data):
    """figures.py --only=baby,best (the Results table's other GPU rows) on the CPU, tiny: our train.py on nanoGPT's baby
    GPT config writes a checkpoint, and bench.py's step, sampling and int8 rows are of it; the best config's row holds
    its lowest val; every row's numbers are the ones the runs printed."""
    model = '--n_layer=1 --n_head=2 --n_embd=32 --block_size=16 --batch_size=4 --device=cpu --compile=False'
    p = run('figures.py', '--only=baby,best', '--seeds=1', '--caches=warm',
            f'--args=--data_dir={char_data} {model} --max_iters=4 --lr_decay_iters=4 --warmup_iters=1 '
            '--eval_interval=2 --eval_iters=1',
            f'--bench_args=--data_dir={char_data} {model} --steps=1 --warmup_steps=0 --num_samples=2 '
            '--max_new_tokens=4 --eval_iters=1 --int8_rounds=1')
    rows = dict(re.findall(r'^\| (.+?) \| - \| (.+) \|$', p.stdout, re.M))
    baby = re.fullmatch(r'best val ([\d.]+) at iter (\d+), ([\d.]+) s from launch \| ([\d.]+) s launch to done',
                        rows["nanoGPT's baby GPT (`config/train_shakespeare_char.py`) in our train.py, 4 iters"])
    assert baby and 1 < float(baby[1]) < 4.17 and baby[2] in ('2', '4') and float(baby[3]) < float(baby[4])
    step = re.fullmatch(r'([\d.]+) ms/iter, ([\d,]+) tok/s \| MFU n/a', rows['its training step (bench.py)'])
    assert step and float(step[1]) == pytest.approx(4 * 16 * 1000 / float(step[2].replace(',', '')), rel=0.01)
    assert re.fullmatch(r'batching [\d.]+x, KV cache [\d.]+x \| -',
                        rows['sampling from its checkpoint (bench.py --bench=sample)'])
    int8 = re.fullmatch(r'state dict ([\d.]+)x smaller, val loss ([-+][\d.]+) nats \| sampling [\d.]+x float.s tokens/s',
                        rows['int8 weights of its checkpoint (bench.py --bench=int8)'])
    assert int8 and float(int8[1]) > 1 and abs(float(int8[2])) < 0.05
    best = [(k, v) for k, v in rows.items() if k.startswith('best config: lowest val within 115 s of launch, warm')]
    assert len(best) == 1 and re.fullmatch(r'best config: .*seeds 1-1 \(([\d.]+)\)', best[0][0])[1] == \
        re.fullmatch(r'([\d.]+) at [\d.]+ s \| -', best[0][1])[1]


def test_figures_py_step_rows_are_the_ratios_of_the_times_printed(tmp_path):
    """figures.py --only=step with a stand-in nanoGPT whose bench.py prints 20 ms an iteration (its last line) and a
    tiny model of ours on the CPU: for batch 12 and 32, each ratio is nanoGPT's ms over ours (with and without the
    float8 head), and Muon's share is (Muon's ms - AdamW's) / Muon's, to the digits printed."""
    nano = tmp_path / 'nanoGPT'
    nano.mkdir()
    (nano / 'bench.py').write_text("print('time per iteration: 30.0000ms')\nprint('time per iteration: 20.0000ms')\n")
    p = run('figures.py', '--only=step', f'--nanogpt={nano}',
            f'--bench_args=--data_dir={tmp_path} --device=cpu --n_layer=1 --n_head=2 --n_embd=32 --block_size=16 '
            '--vocab_size=80 --steps=1 --warmup_steps=0 --compare_rounds=1')  # no dataset there; 80: float8 takes x16
    for batch in (12, 32):
        ms = {}
        for name in ('our defaults (Muon), fp8_head=True', "optim='adamw', fp8_head=True",
                     'our defaults (Muon)', "optim='adamw'"):  # the plain two last: Muon's share is theirs
            m = re.search(rf"^\| GPT-2 124M step, batch {batch} x 1024, {re.escape(name)} \| 20.00 ms \| ([\d.]+) ms "
                          rf"\| ([\d.]+)x \|$", p.stdout, re.M)
            ms[name] = float(m[1])
            assert float(m[2]) == pytest.approx(20 / ms[name], rel=0.005 / ms[name], abs=0.0005)
        muon, adamw = list(ms.values())[2:]
        m = re.search(rf"^\| Muon's share of our default step, batch {batch} \| - \| (-?[\d.]+) ms \| (-?[\d.]+)% \|$",
                      p.stdout, re.M)
        assert float(m[1]) == pytest.approx(muon - adamw, abs=0.0101)
        assert float(m[2]) == pytest.approx(100 * (muon - adamw) / muon, abs=0.005 + 100 * 0.01 / muon)
