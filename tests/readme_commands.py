"""
Run every shell line of README.md as a newcomer would paste it, on a fresh clone, after the quick start.

    python tests/readme_commands.py            # clones this repository's HEAD into a temporary folder; ~10 min
    python tests/readme_commands.py --keep     # and keep the clone

Each line of the README's ```sh blocks runs in order, in the clone, through bash with the quick start's virtual
environment active (the README says to activate it). A line that trains for long on a GPU runs with the short
settings of SHORTER appended (the same command, fewer steps); a line in SKIP is not run, for the reason given there.
Prints one line per command (ok / FAILED / skipped, seconds) and exits 1 if any failed. Not a pytest file: it takes
longer than the test suite's budget, and CI runs `make test` itself.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {
    'make test': "the test suite: CI runs it on every submission, and it takes minutes of its own",
}
SHORTER = {  # prefix of a line -> what is appended: the same command, a CPU-sized budget
    'python train.py config/ladder/': ' --max_iters=20 --eval_interval=20 --eval_iters=2',
    'python ladder.py --quick': ' --rungs=01_bigram,02_mean --seeds=1 --tokens=40960',
    'python ladder.py --rungs=': ' --tokens=20480 --evals=1 --eval_iters=2',
    'python ladder.py': ' --rungs=01_bigram --seeds=1 --tokens=20480 --evals=1 --eval_iters=2',
}


def readme_lines(text):
    """The command lines of the ```sh blocks, in order, without their comments."""
    lines = []
    for block in re.findall(r'^```sh\n(.*?)^```', text, re.M | re.S):
        for line in block.splitlines():
            command = re.sub(r'\s+#.*$', '', line).strip()
            if command and not command.startswith('#'):
                lines.append(command)
    return lines


def main():
    keep = '--keep' in sys.argv[1:]
    work = tempfile.mkdtemp(prefix='readme-')
    clone = os.path.join(work, 'mini-gpt')
    subprocess.run(['git', 'clone', '-q', REPO, clone], check=True)
    failed = 0
    for line in readme_lines(open(os.path.join(clone, 'README.md')).read()):
        if line in SKIP:
            print(f"skipped | {line} | {SKIP[line]}", flush=True)
            continue
        command = line + next((extra for prefix, extra in SHORTER.items() if line.startswith(prefix)), '')
        activate = 'source .venv/bin/activate && ' if os.path.exists(os.path.join(clone, '.venv')) else ''
        t0 = time.time()
        p = subprocess.run(['bash', '-c', activate + command], cwd=clone, capture_output=True, text=True)
        status = 'ok' if p.returncode == 0 else f'FAILED (exit {p.returncode})'
        print(f"{status} | {command} | {time.time() - t0:.1f} s", flush=True)
        if p.returncode != 0:
            failed += 1
            print('\n'.join('    ' + s for s in (p.stdout + p.stderr).strip().splitlines()[-8:]), flush=True)
    if not keep:
        shutil.rmtree(work)
    else:
        print(f"the clone: {clone}")
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
