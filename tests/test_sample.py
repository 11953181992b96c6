"""sample.py from the command line: which checkpoint, cache == reference, streaming, progress, top-p, --show_probs,
--attention, bad input."""
import re
import sys

import pytest
import torch

from conftest import TINY, on_terminal, run, run_here


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
    """sample.py in this process (conftest.run_here): its output and exit status, without a new process's start."""
    p = run_here('sample.py', f'--out_dir={ckpt_dir}', '--device=cpu', *args)
    if check and p.returncode != 0:
        raise AssertionError(f"sample.py {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


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


def test_show_probs_names_its_columns_once(ckpt_dir):
    lines = sample(ckpt_dir, '--start=All', '--num_samples=2', '--max_new_tokens=4', '--show_probs').stdout
    lines = lines.splitlines()
    first = next(i for i, line in enumerate(lines) if ' <- ' in line)
    header = "    chosen    then the 5 likeliest candidates, each with its probability (sample 1 of 2)"
    assert lines[first - 1] == header
    assert sum('likeliest' in line for line in lines) == 1


def test_it_says_which_checkpoint_it_samples_from(ckpt_dir, tmp_path):
    p = sample(ckpt_dir, '--start=All', '--num_samples=1', '--max_new_tokens=2', check=False)
    assert re.fullmatch(rf"sampling from {re.escape(str(ckpt_dir / 'best.pt'))} \(iter 20, best val loss \d\.\d{{4}}\)",
                        p.stderr.splitlines()[0])
    bare = torch.load(ckpt_dir / 'best.pt', weights_only=True)  # as an int8 export: no iteration, no val loss
    torch.save({k: bare[k] for k in ('model', 'model_args', 'tokenizer')}, tmp_path / 'bare.pt')
    p = sample(ckpt_dir, f'--ckpt={tmp_path / "bare.pt"}', '--num_samples=1', '--max_new_tokens=2', check=False)
    assert p.returncode == 0 and p.stderr == f"sampling from {tmp_path / 'bare.pt'}\n"


def test_without_a_checkpoint_the_error_names_the_out_dirs_that_have_one(tmp_path):
    args = ['--device=cpu', '--num_samples=1', '--max_new_tokens=2']
    p = run_here('sample.py', *args, cwd=tmp_path)
    assert p.returncode == 1 and p.stderr == ("error: no checkpoint at out/best.pt, nor in any out*/ directory here; "
                                              "train one first (python train.py) or name one with --ckpt=PATH\n")
    for d in ('out-names', 'out-ladder/08_residual', 'elsewhere'):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / 'best.pt').touch()
    p = run_here('sample.py', *args, cwd=tmp_path)
    assert p.returncode == 1 and p.stderr == ("error: no checkpoint at out/best.pt; these hold a best.pt: "
                                              "out-ladder/08_residual, out-names (pass one with --out_dir=...)\n")


def test_a_ckpt_that_is_no_name_and_no_file_is_one_clear_error(ckpt_dir):
    p = sample(ckpt_dir, '--ckpt=latest', check=False)
    assert p.returncode == 1
    assert p.stderr == "error: --ckpt=latest is not 'best', 'last' or a path to a checkpoint file\n"


def test_several_samples_show_a_progress_bar_on_a_terminal_only(ckpt_dir):
    args = ['--start=First', '--num_samples=2', '--max_new_tokens=30']
    piped = sample(ckpt_dir, *args).stderr
    assert '\r' not in piped and '30/30' not in piped  # a log file gets no bar
    code, out, err = on_terminal('sample.py', f'--out_dir={ckpt_dir}', '--device=cpu', *args)
    assert code == 0 and len(bodies(out)) == 2
    assert re.search(r'2 samples: 100%.*\| 30/30 ', err), err  # the bar counted every new token


def test_attention_png_labels_every_map_with_the_prompt_tokens(ckpt_dir, tmp_path):
    pytest.importorskip('matplotlib')
    from common import pyplot
    plt = pyplot()
    before = set(plt.get_fignums())
    p = sample(ckpt_dir, '--start=Fi r\nst', f'--attention={tmp_path / "a.png"}', check=False)
    assert p.returncode == 0 and (tmp_path / 'a.png').stat().st_size > 0, p.stderr
    fig = plt.figure(*(set(plt.get_fignums()) - before))
    try:
        maps = [ax for ax in fig.axes if ax.images]
        assert len(maps) == 2 * 2  # 2 layers x 2 heads in the TINY model
        tokens = ['F', 'i', '␣', 'r', '⏎', 's', 't']
        for ax in maps:
            assert [t.get_text() for t in ax.get_xticklabels()] == tokens  # the token attended to
            assert [t.get_text() for t in ax.get_yticklabels()] == tokens  # the query token
            assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
        colorbar, = [ax for ax in fig.axes if not ax.images]
        assert colorbar.get_ylabel() == 'attention probability' and colorbar.get_ylim() == (0, 1)
        title = fig.get_suptitle()
        expected = (f"attention of {ckpt_dir / 'best.pt'} on 7 prompt tokens: row = query token, column = the token "
                    f"it attends to")
        assert ''.join(title.split()).startswith(''.join(expected.split()))  # wrapped to fit: line breaks anywhere
        box = next(t for t in fig.texts if t.get_text() == title).get_window_extent()
        assert 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height  # the title fits in the figure
        assert float(maps[0].images[0].get_array()[0, 1].filled(-1)) == -1  # a later token is masked: blank
    finally:
        plt.close(fig)


def test_attention_map_without_matplotlib_is_ascii(ckpt_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib raises ImportError: as if not installed
    out = sample(ckpt_dir, '--start=First', f'--attention={tmp_path / "a.png"}').stdout
    assert out.startswith(f"attention of {ckpt_dir / 'best.pt'} on 5 prompt tokens: row = query token, column = the "
                          f"token it attends to")
    assert 'ASCII' in out and not (tmp_path / 'a.png').exists()
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
    p = sample(ckpt_dir, *args, check=False)
    assert p.returncode != 0 and message in p.stderr and 'Traceback' not in p.stderr


def test_prompt_file_errors(ckpt_dir, tmp_path):
    latin1 = tmp_path / 'latin1.txt'
    latin1.write_bytes('café'.encode('latin-1'))
    for path, message in ((tmp_path / 'missing.txt', 'not found'), (latin1, 'is not UTF-8')):
        p = sample(ckpt_dir, f'--start=FILE:{path}', check=False)
        assert p.returncode != 0 and p.stderr.startswith('error:') and message in p.stderr


def test_a_prompt_longer_than_the_context_is_cropped_with_a_note(ckpt_dir):
    p = sample(ckpt_dir, '--start=' + 'First Citizen: ' * 3, '--num_samples=1', '--max_new_tokens=5')
    assert 'the model sees only the last 16' in p.stderr and p.stdout.count('First Citizen: ') == 3
