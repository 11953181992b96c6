"""sample.py from the command line: cache == reference, streaming, top-p, --show_probs, --attention, bad input."""
import re

import pytest

from conftest import TINY, run, run_here


@pytest.fixture(scope='module')
def ckpt_dir(tmp_path_factory):
    """A tiny char model trained for a few iterations by train.py."""
    from conftest import SAMPLE_TEXT
    tmp = tmp_path_factory.mktemp('sample')
    (tmp / 'input.txt').write_text(SAMPLE_TEXT * 40)
    run('data/shakespeare_char/prepare.py', '--input', tmp / 'input.txt', '--out_dir',
        tmp / 'data' / 'shakespeare_char')
    run('train.py', *TINY, f'--data_dir={tmp / "data"}', f'--out_dir={tmp / "out"}', '--max_iters=20',
        '--eval_interval=20')
    return tmp / 'out'


def sample(ckpt_dir, *args, check=True):
    return run('sample.py', f'--out_dir={ckpt_dir}', '--device=cpu', *args, check=check)


def sample_here(ckpt_dir, *args):
    """sample() for a run that stops at a check: in this process (conftest.run_here)."""
    return run_here('sample.py', f'--out_dir={ckpt_dir}', '--device=cpu', *args)


def bodies(stdout):
    return [b.rstrip('\n') for b in re.split(r'-+ sample \d+/\d+ -+\n', stdout.split('\n----------\n')[0])[1:]]


def test_kv_cache_and_reference_print_the_same_samples(ckpt_dir):
    args = ['--start=First', '--num_samples=3', '--max_new_tokens=40', '--seed=3', '--top_p=0.9']  # 40 > block 16
    cached = bodies(sample(ckpt_dir, *args).stdout)
    assert len(cached) == 3 and all(b.startswith('First') and len(b) == 45 for b in cached)
    assert cached == bodies(sample(ckpt_dir, *args, '--kv_cache=False').stdout)


def test_one_sample_streams_the_same_text(ckpt_dir):
    streamed = bodies(sample(ckpt_dir, '--start', 'All:', '--num_samples=1', '--max_new_tokens=25').stdout)
    # --show_probs turns streaming off: the sample is printed whole at the end
    whole = sample(ckpt_dir, '--start', 'All:', '--num_samples=1', '--max_new_tokens=25', '--show_probs').stdout
    assert streamed[0].startswith('All:') and len(streamed[0]) == 29
    assert streamed == bodies(whole[whole.index('---'):])


def test_show_probs_lists_five_candidates_per_token(ckpt_dir):
    out = sample(ckpt_dir, '--start=All', '--num_samples=1', '--max_new_tokens=6', '--show_probs').stdout
    lines = [line for line in out.splitlines() if ' <- ' in line]
    assert len(lines) == 6 and all(line.count(' | ') == 4 for line in lines)
    probs = [float(x) for x in re.findall(r"' (\d\.\d+)", lines[0])]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_attention_map_without_matplotlib_is_ascii(ckpt_dir, tmp_path):
    out = sample(ckpt_dir, '--start=First', f'--attention={tmp_path / "a.png"}').stdout
    if 'ASCII' not in out:
        pytest.skip('matplotlib is installed: a png was written')
    assert out.count('layer ') == 2 * 2  # 2 layers x 2 heads in the TINY model
    rows = [line for line in out.splitlines() if line.startswith("     '")]
    assert rows[0].endswith("'F' @    ")  # the first token can only attend to itself


@pytest.mark.parametrize('args,message', [
    (['--top_p=0'], 'top_p must be in (0, 1]'),
    (['--top_p=1.5'], 'top_p must be in (0, 1]'),
    (['--temperature=-1'], 'temperature must be >= 0'),
    (['--top_k=-1'], 'top_k must be >= 0'),
    (['--start=First~'], "'~'"),
    (['--start='], 'prompt is empty'),
    (['--stop_at_eot'], 'stop_at_eot needs a tokenizer with <|endoftext|>'),
])
def test_bad_sampling_input_is_one_clear_line(ckpt_dir, args, message):
    p = sample_here(ckpt_dir, *args)
    assert p.returncode != 0 and message in p.stderr and 'Traceback' not in p.stderr


def test_prompt_file_errors(ckpt_dir, tmp_path):
    latin1 = tmp_path / 'latin1.txt'
    latin1.write_bytes('café'.encode('latin-1'))
    for path, message in ((tmp_path / 'missing.txt', 'not found'), (latin1, 'is not UTF-8')):
        p = sample_here(ckpt_dir, f'--start=FILE:{path}')
        assert p.returncode != 0 and p.stderr.startswith('error:') and message in p.stderr


def test_a_prompt_longer_than_the_context_is_cropped_with_a_note(ckpt_dir):
    p = sample(ckpt_dir, '--start=' + 'First Citizen: ' * 3, '--num_samples=1', '--max_new_tokens=5')
    assert 'the model sees only the last 16' in p.stderr and p.stdout.count('First Citizen: ') == 3
