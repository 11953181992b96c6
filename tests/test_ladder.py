"""The ladder configs: each rung runs through train.py, and its model trains with finite loss and gradients."""
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run
from model import GPT, GPTConfig

RUNGS = sorted((REPO / 'config' / 'ladder').glob('*.py'))
VOCAB = {'shakespeare_char': 65, 'shakespeare': 50257, 'names': 27}


def rung_model_config(path, **shrink):
    """The GPTConfig a rung builds: its own settings over GPTConfig's defaults, shrunk for a test."""
    ns = {'__file__': str(path)}
    exec(path.read_text(), ns)
    args = {f.name: ns[f.name] for f in fields(GPTConfig) if f.name in ns}
    return GPTConfig(**{**args, 'vocab_size': VOCAB[ns['dataset']], **shrink})


def test_ladder_is_complete_and_each_rung_builds_on_the_one_before():
    numbered = [p.stem for p in RUNGS if p.stem[:2].isdigit()]
    assert [int(n[:2]) for n in numbered] == list(range(1, 21))
    for prev, cur in zip(numbered, numbered[1:]):
        assert f"'{prev}.py'" in (REPO / 'config' / 'ladder' / f'{cur}.py').read_text()
    assert {p.stem for p in RUNGS} >= {'names_01_bigram', 'names_02_mlp', 'names_03_wavenet'}


@pytest.mark.parametrize('path', RUNGS, ids=lambda p: p.stem)
def test_rung_model_trains_with_finite_loss_and_gradients(path):
    torch.manual_seed(0)
    model = GPT(rung_model_config(path, n_embd=32, block_size=16))
    opt = model.configure_optimizers(0.0, 1e-3, (0.9, 0.99), 'cpu')
    x, y = torch.randint(model.config.vocab_size, (2, 4, 16))
    for _ in range(3):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        assert math.isfinite(loss.item())
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()


@pytest.fixture(scope='module')
def fake_datasets(tmp_path_factory):
    """Random token streams with the vocabulary of each dataset the rungs use."""
    root = tmp_path_factory.mktemp('data')
    for name, vocab in VOCAB.items():
        d = root / name
        d.mkdir()
        ids = np.random.default_rng(0).integers(0, vocab, 4000).astype(np.uint16)
        ids[:3600].tofile(d / 'train.bin')
        ids[3600:].tofile(d / 'val.bin')
        meta = {'tokenizer': 'char', 'chars': [chr(65 + i % 50) for i in range(vocab)], 'vocab_size': vocab,
                'dtype': 'uint16', 'train_tokens': 3600, 'val_tokens': 400}
        (d / 'meta.json').write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize('path', [p for p in RUNGS if p.stem in ('01_bigram', '07_four_blocks', '13_gpt2_bpe',
                                                                 '20_llama', 'names_03_wavenet')],
                         ids=lambda p: p.stem)
def test_rung_runs_through_train_py(path, fake_datasets, tmp_path):
    p = run('train.py', path, '--max_iters=3', '--eval_interval=3', '--eval_iters=2', '--batch_size=4',
            '--block_size=16', '--n_embd=32', '--device=cpu', '--compile=False', f'--data_dir={fake_datasets}',
            f'--out_dir={tmp_path}')
    assert re.search(r'done 3 iters \| best val [\d.]+', p.stdout)
