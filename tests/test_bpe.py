"""Our own byte-level BPE (--tokenizer=bpe:N): learned from the training split alone, the same vocabulary for the same
text, a lossless round trip, bits per byte from its own byte lengths, read by train.py and sample.py with no flag, and
exported as a tokenizer.json that transformers' AutoTokenizer encodes to our ids. The plays corpus splits by play."""
import json

import pytest

from conftest import SAMPLE_TEXT, TINY, run, run_here
from data.common import EOT, Tokenizer, train_bpe
from test_data import prepared

VAL_MARK = 'Qzx Qzx Qzx. '  # text only the val part holds, so frequent that a BPE trained on it would merge it
TEXT = SAMPLE_TEXT * 30 + 'Caf\u00e9 cr\u00e8me, na\u00efve \u2014 \u00e0 la carte.\n' * 20  # 2- and 3-byte characters


def prepare_bpe(tmp_path, n=300, *extra):
    """data/shakespeare/prepare.py --tokenizer bpe:n on TEXT followed by VAL_MARKs that fall in the val split alone
    (its last 10%)."""
    text = TEXT + VAL_MARK * (len(TEXT) // 9 // len(VAL_MARK))  # so 90% of it ends within TEXT
    src, out = tmp_path / 'in.txt', tmp_path / f'bpe{n}'
    src.write_text(text, encoding='utf-8')
    p = run('data/shakespeare/prepare.py', '--input', src, '--out_dir', out, '--tokenizer', f'bpe:{n}', *extra)
    meta, train, val = prepared(out)
    ids = {'train': train, 'val': val}
    split = int(0.9 * len(text))
    return p, meta, ids, text[:split], text[split:], out


def merged_mark(vocab):
    return any('Qz' in t or 'zx' in t for t in vocab)


def test_the_vocabulary_comes_from_the_training_split_alone(tmp_path):
    _, meta, ids, train, val, out = prepare_bpe(tmp_path)
    assert 'Qz' not in train and val.count(VAL_MARK) > 20
    tok = Tokenizer(meta)
    assert not merged_mark(tok.hf.get_vocab())  # never merged: the trainer never saw the val split
    with_val = Tokenizer({'tokenizer': 'bpe:300', 'bpe': train_bpe([train + val], 300)})
    assert merged_mark(with_val.hf.get_vocab())  # had it seen it, 'Qz' would be among the first merges
    assert meta['vocab_size'] == 301 and tok.eot == 300 and tok.decode([tok.eot]) == EOT  # N tokens, then eot
    assert (out / 'tokenizer.json').read_text() == meta['bpe']  # saved beside meta.json


def test_round_trip_of_every_val_byte_and_bits_per_byte_by_hand(tmp_path):
    _, meta, ids, train, val, _ = prepare_bpe(tmp_path)
    tok = Tokenizer(meta)
    assert tok.decode(ids['val']) == val and tok.decode(ids['train']) == train  # lossless, on unseen text too
    assert tok.encode(val) == ids['val']
    odd = 'x\u00e9\u20ac\U0001f600\n\t\x00'  # 1-, 2-, 3- and 4-byte characters, control bytes: all as bytes
    assert tok.decode(tok.encode(odd)) == odd
    token_bytes = tok.token_bytes()
    for text in (val, train, odd):  # bits per byte divide by these: they add up to the text's UTF-8 bytes
        assert token_bytes[tok.encode(text)].sum() == len(text.encode('utf-8'))
    # by hand: a byte token is 1 byte; '\u00e9' alone is 2 (0xC3 0xA9); <|endoftext|> has no text: 0
    assert token_bytes[tok.encode('a')[0]] == 1 and token_bytes[tok.eot] == 0
    assert [token_bytes[i] for i in tok.encode('\u00e9')] in ([2], [1, 1])


def test_the_same_text_and_n_give_the_same_vocabulary(tmp_path):
    _, meta, ids, _, _, out = prepare_bpe(tmp_path)
    p, again, ids_again, _, _, _ = prepare_bpe(tmp_path)
    assert 'already prepared' in p.stdout and again == meta and ids_again == ids
    texts = [SAMPLE_TEXT * 20]
    assert train_bpe(texts, 280) == train_bpe(texts, 280)  # a fresh training, the same JSON


def test_too_small_a_text_for_n_or_n_below_256_is_one_line(tmp_path):
    src = tmp_path / 'in.txt'
    src.write_text(SAMPLE_TEXT * 3)
    for n, expected in ((5000, 'gives only'), (100, 'at least the 256 bytes')):
        p = run_here('data/shakespeare/prepare.py', '--input', src, '--out_dir', tmp_path / 'o', f'--tokenizer=bpe:{n}')
        assert p.returncode != 0 and p.stderr.startswith('error:') and expected in p.stderr, p.stderr


def test_train_sample_and_export_use_it_with_no_flag(tmp_path):
    """train.py records the vocabulary in its checkpoints (bits per byte from its byte lengths); sample.py decodes with
    it; export.py writes it as tokenizer.json, which AutoTokenizer loads and which encodes a val passage to our ids."""
    _, meta, ids, _, val, data = prepare_bpe(tmp_path)
    out = tmp_path / 'run'
    p = run('train.py', *TINY, f'--data_dir={tmp_path}', f'--dataset={data.name}', f'--out_dir={out}',
            '--max_iters=4', '--eval_interval=4', '--eval_iters=1')
    assert 'val bpb' in p.stdout
    p = run_here('sample.py', f'--out_dir={out}', '--ckpt=last', '--device=cpu', '--start=First', '--num_samples=1',
                 '--max_new_tokens=8')
    assert 'First' in p.stdout
    transformers = pytest.importorskip('transformers')
    pytest.importorskip('safetensors')
    p = run_here('export.py', f'--out_dir={out}', '--ckpt=last', f'--export_dir={tmp_path / "hf"}')
    assert p.returncode == 0, p.stderr
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / 'hf')
    passage = val[:200] + TEXT[-60:]
    assert theirs(passage)['input_ids'] == Tokenizer(meta).encode(passage)


VAL_PLAYS = ('much-ado-about-nothing', 'henry-v', 'coriolanus', 'macbeth')  # data/plays/prepare.py's


def test_plays_split_by_play(tmp_path):
    """data/plays/prepare.py: the four validation plays, whole, are val and the others train; bpe:N learns from the
    training plays alone. The plays come from --cache, the file the script keeps after pip: made up here."""
    plays = {name: f"{name.upper()}:\n" + SAMPLE_TEXT * 3 for name in ('hamlet', 'othello', 'the-tempest', *VAL_PLAYS)}
    plays['macbeth'] += VAL_MARK * 20  # text of a validation play alone
    out = tmp_path / 'plays'
    out.mkdir()
    (out / 'plays.json').write_text(json.dumps(plays))
    train_plays = [t for name, t in plays.items() if name not in VAL_PLAYS]
    for tokenizer, joined in (('char', lambda texts: '\n\n'.join(texts)),
                              ('bpe:280', lambda texts: EOT.join(texts) + EOT)):
        run('data/plays/prepare.py', '--out_dir', out, '--cache', out / 'plays.json', f'--tokenizer={tokenizer}')
        meta, train, val = prepared(out)
        tok = Tokenizer(meta)
        assert tok.decode(val) == joined([plays[p] for p in VAL_PLAYS]) and tok.decode(train) == joined(train_plays)
    assert not merged_mark(tok.hf.get_vocab())


def test_tinystories_learns_from_the_train_file_and_needs_a_val_file(tmp_path):
    stories = [f"Once upon a time, Tom found {k} red stones by the river." for k in range(60)]
    (tmp_path / 'train.txt').write_text(''.join(s + '\n<|endoftext|>\n' for s in stories))
    (tmp_path / 'valid.txt').write_text(''.join(s + '\n<|endoftext|>\n' for s in [VAL_MARK * 30] * 5))
    out = tmp_path / 'out'
    run('data/tinystories/prepare.py', '--source', tmp_path / 'train.txt', tmp_path / 'valid.txt',
        '--tokenizer=bpe:300', '--out_dir', out, '--workers=1')
    meta, _, val = prepared(out)
    tok = Tokenizer(meta)
    assert tok.decode(val) == ((VAL_MARK * 30).strip() + EOT) * 5 and not merged_mark(tok.hf.get_vocab())
    p = run_here('data/tinystories/prepare.py', '--source', tmp_path / 'train.txt', '--tokenizer=bpe:300', '--out_dir',
                 tmp_path / 'carved')
    assert p.returncode != 0 and 'learns from the training split only' in p.stderr
