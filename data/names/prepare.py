"""
First names at character level, a newline after each name (makemore's task): writes train.bin, val.bin
(the names shuffled with a fixed seed, first 90% / last 10%) and meta.json beside this script, or in --out_dir.

    python data/names/prepare.py                   # makemore's names.txt: 32,033 English names
    python data/names/prepare.py --input FILE      # any file with one name per line
    python data/names/prepare.py --source indian   # Indian first names, from the PyPI package getindianname

--source makemore (the default) reads input.txt beside this script, else downloads makemore's names.txt,
else (offline) falls back to --source english: the 1990 US census first names in the PyPI package `names`.
The packages' names are lower-cased and kept when they are a-z only, once each.
"""
import argparse
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from data.common import (already_prepared, download_text, log, package_file, read_text, sha256,  # noqa: E402
                         write_atomic, write_dataset)

MAKEMORE_URL = 'https://raw.githubusercontent.com/karpathy/makemore/master/names.txt'
PACKAGES = {  # source -> (requirement, its files of names); make setup installs both (requirements-nodeps.txt)
    'english': ('names==0.3.0', ['names/dist.male.first', 'names/dist.female.first']),  # 'JAMES  3.318  3.318  1'
    'indian': ('getindianname==1.0.7', ['getindianname/malename.txt', 'getindianname/femalename.txt']),
}


def package_names(source):
    """The a-z names in a package's files, lower-cased, once each (read, not imported: getindianname goes online)."""
    requirement, paths = PACKAGES[source]
    names = []
    for path in paths:
        try:
            lines = read_text(package_file(requirement, path)).splitlines()
        except FileNotFoundError as e:
            sys.exit(f"error: {e}")
        names += [re.sub(r'(\s+[\d.]+)+$', '', line.strip()).lower() for line in lines]  # drop census figures
    kept = list(dict.fromkeys(n for n in names if re.fullmatch('[a-z]+', n)))
    return kept, f"PyPI package {requirement} ({len(kept):,} of its {len(names):,} names are a-z, once each)"


def makemore_names(cache_path):
    if os.path.exists(cache_path):
        return read_text(cache_path).splitlines(), cache_path
    try:
        text = download_text(MAKEMORE_URL)
    except Exception as e:  # offline: no route, DNS failure, timeout...
        log(f"download failed ({type(e).__name__}: {e}); using the English names in the PyPI package names")
        return package_names('english')
    write_atomic(cache_path, text.encode('utf-8'))
    return text.splitlines(), MAKEMORE_URL


here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument('--input', help='a UTF-8 text file with one name per line')
parser.add_argument('--source', default='makemore', help='makemore, english or indian (without --input)')
parser.add_argument('--out_dir', default=here, help='where to write train.bin, val.bin, meta.json')
args = parser.parse_args()
if args.source not in ('makemore', *PACKAGES):
    sys.exit(f"error: unknown --source '{args.source}' (allowed: makemore, {', '.join(PACKAGES)})")
os.makedirs(args.out_dir, exist_ok=True)

if args.input:
    names, source = read_text(args.input).splitlines(), args.input
elif args.source == 'makemore':
    names, source = makemore_names(os.path.join(args.out_dir, 'input.txt'))
else:
    names, source = package_names(args.source)
names = [n.strip() for n in names if n.strip()]
log(f"names: {len(names):,} from {source}")
if len(names) < 2:
    sys.exit(f"error: {source} has {len(names)} name; train and val need at least one each")
text = ''.join(n + '\n' for n in names)
fingerprint = sha256(text.encode('utf-8')) + ':char'
if already_prepared(args.out_dir, fingerprint):
    log(f"already prepared in {args.out_dir} (same names); nothing to do")
    sys.exit(0)

random.Random(1337).shuffle(names)  # the file may be sorted (makemore's is by popularity): val gets a fair share
n = int(0.9 * len(names))
chars = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(chars)}
train, val = (''.join(name + '\n' for name in part) for part in (names[:n], names[n:]))
meta = write_dataset(args.out_dir, [stoi[c] for c in train], [stoi[c] for c in val], {
    'tokenizer': 'char', 'vocab_size': len(chars), 'chars': chars, 'source': source, 'fingerprint': fingerprint})
log(f"vocab {meta['vocab_size']} chars | train {n:,} names, {meta['train_tokens']:,} tokens "
    f"| val {len(names) - n:,} names, {meta['val_tokens']:,} tokens | {meta['dtype']} -> {args.out_dir}")
