import contextlib
import csv
import fcntl
import io
import os
import pty
import runpy
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
import torch

if os.environ.get('PYTEST_XDIST_WORKER'):  # several test processes share the cores: one thread each, as the scripts
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # and as scripts run in this process (common.cpu_threads)
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / 'shared' / 'data'  # real text beside the checkout (absent in a user's clone)
sys.path.insert(0, str(REPO))
from configurator import read_settings  # noqa: E402

# a tiny model that trains in well under a second per iteration on a CPU
TINY = ['--device=cpu', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=16',
        '--batch_size=8', '--eval_iters=4', '--log_interval=5', '--warmup_iters=2', '--optim=adamw']

SAMPLE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
)

# The slowest files, slowest first (seconds on 2 CPU cores). `make test` hands whole files to its workers in the order
# they were collected: these go first, so that no worker is left running one of them alone at the end.
SLOW_FILES = ['test_ddp.py', 'test_bench.py', 'test_faults.py', 'test_cli.py']


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: SLOW_FILES.index(item.path.name) if item.path.name in SLOW_FILES else len(SLOW_FILES))


def script_env():
    """The scripts' environment, as the test has it now (monkeypatched variables included), with unbuffered output
    and one thread each: the tiny models gain nothing from more, and on a busy machine threads that wait for each
    other make them many times slower."""
    return dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))


def run(script, *args, cwd=REPO, check=True, timeout=600):
    """Run one of the repo's scripts in a subprocess; return the CompletedProcess (stdout + stderr as text)."""
    p = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=script_env(),
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def on_terminal(script, *args, timeout=300):
    """Run one of the repo's scripts with stdout piped and stderr on a terminal (a pseudo-terminal of 24 lines by 100
    columns: tqdm draws nothing at 0 x 0), as `python script args > log` from a shell. Returns (exit code, stdout,
    what reached the terminal)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    chunks = []

    def read_terminal():  # until the program closes it (Linux: EIO); a thread, so that a full terminal never blocks it
        try:
            while chunk := os.read(primary, 4096):
                chunks.append(chunk)
        except OSError:
            pass
    reader = threading.Thread(target=read_terminal)
    reader.start()
    p = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=script_env(),
                         stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    stdout, _ = p.communicate(timeout=timeout)
    reader.join(timeout=10)
    os.close(primary)
    return p.returncode, stdout, b''.join(chunks).decode(errors='replace')


def csv_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@contextlib.contextmanager
def as_script(script, *args, cwd=REPO):
    """What `python script args` run from cwd sees, for a script run in this process (runpy), put back after: sys.argv,
    the working directory, sys.path (prepare scripts add their folder) and the signal handlers (train.py sets its own).
    Yields the script's path."""
    argv, path, here = sys.argv, list(sys.path), os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.argv = [str(REPO / script), *map(str, args)]
    os.chdir(cwd)
    try:
        yield sys.argv[0]
    finally:
        sys.argv, sys.path[:] = argv, path
        os.chdir(here)
        for s, h in handlers.items():
            signal.signal(s, h)


def run_here(script, *args, cwd=REPO):
    """run() inside this test process, for a script that stops at a check before it trains: the same stdout, stderr
    (sys.exit's message, as python prints it) and exit status, without a new process's seconds of importing torch."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    with as_script(script, *args, cwd=cwd) as path:
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                runpy.run_path(path, run_name='__main__')
        except SystemExit as e:
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                err.write(e.code + '\n')
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def char_data(tmp_path):
    """A prepared shakespeare_char dataset (written by the real prepare script) under tmp_path/data."""
    src = tmp_path / 'input.txt'
    src.write_text(SAMPLE_TEXT * 40)
    run('data/shakespeare_char/prepare.py', '--input', src, '--out_dir', tmp_path / 'data' / 'shakespeare_char')
    return tmp_path / 'data'


def script_keys(script):
    """A script's config keys and defaults, as the configurator reads them (configurator.read_settings)."""
    return read_settings(str(REPO / script))


@pytest.fixture(scope='session')
def train_defaults():
    return script_keys('train.py')
