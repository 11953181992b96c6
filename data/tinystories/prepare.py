"""
TinyStories (Eldan & Li 2023) with GPT-2 BPE: writes train.bin, val.bin (token ids, an <|endoftext|> after
each story) and meta.json beside this script, or in --out_dir.

    python data/tinystories/prepare.py    # TinyStories-*.txt beside this script, else the Hugging Face dataset
    python data/tinystories/prepare.py --source TinyStories-train.txt TinyStories-valid.txt
    python data/tinystories/prepare.py --source my_stories.txt --tokenizer cl100k_base   # any UTF-8 text, offline
    python data/tinystories/prepare.py --tokenizer bpe:4096     # a byte-level BPE of 4,096 tokens, trained here

--source takes files, or folders of them: .txt (stories separated by <|endoftext|> lines, as in the published
TinyStories-train.txt and -valid.txt; a file without any is split at blank lines), .jsonl / .json (JSON lines
with a "text" field) or .parquet (a "text" column, as in the dataset's parquet files). Files with val, valid or
validation in their name make the validation split, the others the training split; when only one of the two is
there, its last --val_fraction (from a story boundary on) becomes the validation split.
Offline (no Hugging Face hub): download TinyStories-valid.txt (19 MB; and TinyStories-train.txt, 1.9 GB, for the
whole set) from https://huggingface.co/datasets/roneneldan/TinyStories/tree/main into data/tinystories/, then run
the first command: it takes the files it finds there.
--workers processes tokenize; the ids stream to the .bin files, so the 1.9 GB train file is never held in memory.
--tokenizer bpe:N learns its vocabulary from the training split alone (a progress bar on a terminal) and saves it in
meta.json and as tokenizer.json; it needs the validation stories in a file of their own.
"""
import argparse
import glob
import itertools
import json
import os
import re
import socket
import sys
import time
from collections import deque
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from data.common import (Tokenizer, already_prepared, begin_rewrite, bpe_size, bpe_tokenizer, log,  # noqa: E402
                         sha256, token_dtype, write_atomic, write_meta)

FORMATS = ('.txt', '.jsonl', '.json', '.parquet')
HERE = os.path.dirname(os.path.abspath(__file__))
DOWNLOAD = 'https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main'  # the published .txt files
VAL_NAME = re.compile(r'(?<![a-z])val(id(ation)?)?(?![a-z])')  # TinyStories-valid.txt, validation-00000-of-1.parquet
BATCH = 256  # stories per task sent to a worker


def txt_stories(path):
    """Stories between '<|endoftext|>' lines if the file has them (in its first MB), else between blank lines."""
    with open(path, encoding='utf-8') as f:
        separator = '<|endoftext|>' if '<|endoftext|>' in f.read(1 << 20) else ''
        if not separator:
            log(f"{path}: no <|endoftext|> lines, so stories are taken to be separated by blank lines")
        f.seek(0)
        lines = []
        for line in itertools.chain(f, [separator]):  # a last separator ends the last story
            if line.strip() != separator:
                lines.append(line)
                continue
            story, lines = ''.join(lines).strip(), []
            if story:
                yield story


def jsonl_stories(path):
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)['text'].strip()
            except (ValueError, KeyError, TypeError, AttributeError):
                sys.exit(f"error: {path} line {n} is not a JSON object with a \"text\" string (JSON lines expected)")


def parquet_stories(path):
    import pyarrow.parquet as pq  # installed with `datasets`
    table = pq.ParquetFile(path)
    if 'text' not in table.schema_arrow.names:
        sys.exit(f"error: {path} has no 'text' column (columns: {', '.join(table.schema_arrow.names)})")
    for batch in table.iter_batches(batch_size=1024, columns=['text']):
        yield from (text.strip() for text in batch.column(0).to_pylist())


def file_stories(paths):
    readers = {'.txt': txt_stories, '.jsonl': jsonl_stories, '.json': jsonl_stories, '.parquet': parquet_stories}
    for path in paths:
        try:
            yield from (story for story in readers[os.path.splitext(path)[1]](path) if story)
        except UnicodeDecodeError as e:
            sys.exit(f"error: {path} is not UTF-8 text ({e})")


def local_splits(sources):
    """{'train': files, 'val': files} from --source paths (files or folders), split by file name."""
    files = []
    for source in sources:
        if os.path.isdir(source):
            files += sorted(p for p in glob.glob(os.path.join(source, '*')) if p.endswith(FORMATS))
        elif os.path.isfile(source):
            files.append(source)
        else:
            sys.exit(f"error: --source {source} does not exist")
    if not files:
        sys.exit(f"error: no {', '.join(FORMATS)} files in {' '.join(sources)}")
    for path in files:
        if not path.endswith(FORMATS):
            sys.exit(f"error: {path}: unknown format (accepted: {', '.join(FORMATS)})")
    val = [p for p in files if VAL_NAME.search(os.path.basename(p).lower())]
    return {'train': [p for p in files if p not in val], 'val': val}


def hub_splits():
    """The train and validation splits of roneneldan/TinyStories on the Hugging Face hub (downloaded once, ~1 GB).
    Offline, at once (not after the hub's retries): one line that says what to download and where it goes."""
    offline = (f"offline, download {DOWNLOAD}/TinyStories-valid.txt (19 MB; TinyStories-train.txt, 1.9 GB, for the "
               f"whole set) into {HERE}/ and run this again, or give any text with --source")
    try:
        if os.environ.get('HF_HUB_OFFLINE') != '1':
            socket.create_connection(('huggingface.co', 443), timeout=3).close()
    except OSError as e:
        sys.exit(f"error: the Hugging Face hub cannot be reached ({e.strerror or type(e).__name__}); {offline}")
    try:
        import datasets
        ds = datasets.load_dataset('roneneldan/TinyStories')
    except Exception as e:  # no `datasets`, a failed download, ...
        sys.exit(f"error: cannot load roneneldan/TinyStories from the Hugging Face hub ({type(e).__name__}: {e}); "
                 f"{offline}")
    return {split: (text.strip() for batch in ds[name].iter(batch_size=1024) for text in batch['text'])
            for split, name in (('train', 'train'), ('val', 'validation'))}


def init_worker(recorded):
    global tok
    tok = Tokenizer(recorded)  # what meta.json records of the tokenizer (bpe:N: its vocabulary too)


def encode_batch(stories):
    """(token ids with an <|endoftext|> after each story, UTF-8 bytes of the stories)"""
    ids = []
    for story in stories:
        ids += tok.encode(story)
        ids.append(tok.eot)
    return np.array(ids, dtype=token_dtype(tok.vocab_size)), sum(len(s.encode('utf-8')) for s in stories)


def imap_bounded(pool, fn, items, ahead):
    """pool.imap, reading at most `ahead` items ahead of the results (pool.imap reads its whole input at once)."""
    pending = deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def tokenize_to_file(pool, stories, path, workers, desc):
    """Append the token ids of all stories to path as they come; returns (tokens, bytes of text)."""
    tokens = nbytes = 0
    batches = iter(lambda: list(itertools.islice(stories, BATCH)), [])
    with open(path, 'wb') as f, tqdm(desc=desc, unit='B', unit_scale=True, disable=not sys.stderr.isatty()) as bar:
        for ids, n in imap_bounded(pool, encode_batch, batches, ahead=4 * workers):
            f.write(ids.tobytes())
            tokens, nbytes = tokens + len(ids), nbytes + n
            bar.update(n)
        f.flush()
        os.fsync(f.fileno())
    return tokens, nbytes


def carve_val(train_path, val_path, fraction, eot, dtype):
    """Move the last `fraction` of train_path's tokens, from the next story start on, to val_path."""
    ids = np.memmap(train_path, dtype=dtype, mode='r')
    start = int(len(ids) * (1 - fraction))
    cut = start + int(np.argmax(ids[start:] == eot)) + 1  # just after the first <|endoftext|> past start
    if cut >= len(ids):
        sys.exit("error: too little text to carve a validation split from: give more stories or a validation file")
    write_atomic(val_path, ids[cut:].tobytes())
    del ids
    os.truncate(train_path, cut * dtype.itemsize)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--source', nargs='+', help='local .txt / .jsonl / .json / .parquet files or folders '
                        '(default: the Hugging Face dataset)')
    parser.add_argument('--tokenizer', default='gpt2', help='gpt2, cl100k_base, or bpe:N (a byte-level BPE of N '
                        'tokens, trained on the training split)')
    parser.add_argument('--val_fraction', type=float, default=0.1, help='the end part taken as val when only one split')
    parser.add_argument('--workers', type=int, default=os.cpu_count(), help='tokenizer processes')
    parser.add_argument('--out_dir', default=HERE, help='where to write train.bin, val.bin, meta.json')
    args = parser.parse_args()
    if not 0 < args.val_fraction < 1:
        sys.exit(f"error: --val_fraction must be between 0 and 1, got {args.val_fraction}")
    if args.workers < 1:
        sys.exit(f"error: --workers must be >= 1, got {args.workers}")
    bpe_tokenizer(args.tokenizer)  # the name, checked now
    os.makedirs(args.out_dir, exist_ok=True)
    beside = sorted(glob.glob(os.path.join(HERE, 'TinyStories-*.txt')))  # the published files, downloaded by hand
    if not args.source and beside:
        log(f"source: {', '.join(beside)} (the files beside this script)")
        args.source = beside

    if args.source:
        files = local_splits(args.source)
        every = files['train'] + files['val']
        stats = [(os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in every]
        fingerprint = sha256(json.dumps([stats, args.tokenizer, args.val_fraction]).encode())  # no 1.9 GB re-read
        source = ' '.join(every)
    else:
        fingerprint, source = f"roneneldan/TinyStories:{args.tokenizer}", 'Hugging Face dataset roneneldan/TinyStories'
    if already_prepared(args.out_dir, fingerprint):
        log(f"already prepared in {args.out_dir} (same source and tokenizer); nothing to do")
        return
    carve = bool(args.source) and not (files['train'] and files['val'])
    if carve:
        log(f"only one split in --source: the last {args.val_fraction:.0%} of its tokens (from a story start on) "
            f"become the validation split")
        splits = {'train': file_stories(every)}
        if bpe_size(args.tokenizer) is not None:
            sys.exit(f"error: --tokenizer {args.tokenizer} learns from the training split only, so it needs the "
                     f"validation stories in a file of their own (a name with val, valid or validation in it)")
    else:
        splits = {split: file_stories(paths) for split, paths in files.items()} if args.source else hub_splits()
    train_texts = (lambda: file_stories(files['train'])) if args.source else (lambda: hub_splits()['train'])
    tok, recorded = bpe_tokenizer(args.tokenizer, train_texts)

    dtype = token_dtype(tok.vocab_size)
    paths = {split: os.path.join(args.out_dir, f'{split}.bin') for split in ('train', 'val')}
    tmp = {split: f"{path}.tmp.{os.getpid()}" for split, path in paths.items()}
    begin_rewrite(args.out_dir)
    try:
        t0 = time.time()
        with Pool(args.workers, initializer=init_worker, initargs=(recorded,)) as pool:
            done = {split: tokenize_to_file(pool, stories, tmp[split], args.workers, split)
                    for split, stories in splits.items()}
        seconds = time.time() - t0
        for split, (tokens, _) in done.items():
            if tokens == 0:
                sys.exit(f"error: no stories in the {split} files of --source: {source}")
        if carve:
            carve_val(tmp['train'], paths['val'], args.val_fraction, tok.eot, dtype)
        for split in splits:
            os.replace(tmp[split], paths[split])
    finally:
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
    counts = {split: os.path.getsize(path) // dtype.itemsize for split, path in paths.items()}
    write_meta(args.out_dir, {
        **recorded, 'dtype': dtype.name,
        'train_tokens': counts['train'], 'val_tokens': counts['val'], 'source': source, 'fingerprint': fingerprint})
    tokens, nbytes = sum(t for t, _ in done.values()), sum(n for _, n in done.values())
    log(f"tokenize | {nbytes / 1e6:.1f} MB in {seconds:.1f} s | {nbytes / 1e6 / seconds:.2f} MB/s "
        f"| {args.workers} processes | {tokens:,} tokens")
    log(f"vocab {tok.vocab_size:,} ({args.tokenizer}) | train {counts['train']:,} tokens "
        f"| val {counts['val']:,} tokens | {dtype.name} -> {args.out_dir}")


if __name__ == '__main__':
    main()
