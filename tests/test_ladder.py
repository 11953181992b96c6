"""The ladder configs: each rung builds the model its file describes, with the parameter count of the README's table;
the rungs run through train.py, which builds that same model."""
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from configurator import parse_config
from conftest import REPO, run
from dataflow import trace_model
from model import (GPT, MLP, CausalMean, CausalSelfAttention, GPTConfig, LayerNorm, NoPositions, RMSNorm, RotaryTable,
                   SwiGLU, WaveNetPair, WindowMLP, model_config, post_norm_plain, post_norm_residual, pre_norm_plain,
                   pre_norm_residual)
from optim import configure_adamw

RUNGS = sorted((REPO / 'config' / 'ladder').glob('*.py'))
VOCAB = {'shakespeare_char': 65, 'shakespeare': 50257, 'names': 27}


def rung(path, defaults, **shrink):
    """(config, model) as train.py builds them from the rung's file: its configurator, its defaults, model_config."""
    config = parse_config(defaults, [str(path)])
    torch.manual_seed(0)
    return config, GPT(GPTConfig(**model_config({**config, **shrink}, VOCAB[config['dataset']])))


def readme_ladder():
    """{rung: (what it changes, dataset, params)} from the README's ladder table."""
    rows = re.findall(r'^\| `(\w+)` \| (.+?) \| (\w+) \| ([\d,]+) \|$', (REPO / 'README.md').read_text(), re.M)
    return {name: (what, dataset, int(params.replace(',', ''))) for name, what, dataset, params in rows}


def mixer(m):
    return m.blocks[0].mixer


def ffn(m):
    return m.blocks[0].ffn


# what each rung's file changes, seen in the model it builds (and, for the training flags, in its config)
CHANGES = {
    '01_bigram': lambda m, c: len(m.blocks) == 0 and m.wte.weight is not m.lm_head.weight
    and isinstance(m.wpe, NoPositions),
    '02_mean': lambda m, c: isinstance(mixer(m), CausalMean) and ffn(m) is None,
    '03_attention': lambda m, c: isinstance(mixer(m), CausalSelfAttention) and mixer(m).n_head == 1
    and isinstance(m.wpe, nn.Embedding),
    '04_multi_head': lambda m, c: mixer(m).n_head == 4 and mixer(m).head_dim == 32,
    '05_ffn_relu': lambda m, c: isinstance(ffn(m), MLP) and isinstance(ffn(m).act, nn.ReLU)
    and ffn(m).c_fc.out_features == 4 * 128,
    '06_gelu': lambda m, c: isinstance(ffn(m).act, nn.GELU),
    '07_four_blocks': lambda m, c: len(m.blocks) == 4 and m.blocks[3].sublayer is pre_norm_plain
    and isinstance(m.blocks[3].norm_1, nn.Identity),
    '08_residual': lambda m, c: all(b.sublayer is pre_norm_residual for b in m.blocks),
    '09_attn_proj': lambda m, c: isinstance(mixer(m).c_proj, nn.Linear),
    '10_post_ln': lambda m, c: m.blocks[0].sublayer is post_norm_residual and isinstance(m.blocks[0].norm_1, LayerNorm),
    '11_pre_ln': lambda m, c: m.blocks[0].sublayer is pre_norm_residual and isinstance(m.ln_f, LayerNorm),
    '12_dropout': lambda m, c: m.drop.p == 0.2 and m.blocks[0].drop.p == 0.2 and mixer(m).dropout == 0.2,
    '13_gpt2_bpe': lambda m, c: m.config.vocab_size == 50257 and c['dataset'] == 'shakespeare',
    '14_mqa': lambda m, c: mixer(m).n_kv_head == 1 and mixer(m).c_attn.out_features == 128 + 2 * 32,
    '15_gqa': lambda m, c: mixer(m).n_kv_head == 2 and mixer(m).c_attn.out_features == 128 + 2 * 64,
    '16_ffn_2x': lambda m, c: ffn(m).c_fc.out_features == 2 * 128,
    '17_rmsnorm': lambda m, c: isinstance(m.blocks[0].norm_1, RMSNorm) and isinstance(m.ln_f, RMSNorm),
    '18_swiglu': lambda m, c: isinstance(ffn(m), SwiGLU),
    '19_rope': lambda m, c: isinstance(m.rope_at, RotaryTable) and isinstance(m.wpe, NoPositions),
    '20_llama': lambda m, c: c['init'] == 'gpt2' and c['decay_lr'] and c['warmup_iters'] == 100
    and abs(mixer(m).c_proj.weight.std().item() - 0.02 / math.sqrt(2 * 4)) < 0.002,  # GPT-2's scaled init
    'names_01_bigram': lambda m, c: len(m.blocks) == 0 and m.config.vocab_size == 27,
    'names_02_mlp': lambda m, c: isinstance(mixer(m), WindowMLP) and mixer(m).window == 3
    and isinstance(ffn(m).act, nn.Tanh),
    'names_03_wavenet': lambda m, c: [b.mixer.dilation for b in m.blocks] == [1, 2, 4]
    and all(isinstance(b.mixer, WaveNetPair) for b in m.blocks) and m.blocks[0].sublayer is post_norm_plain,
}


def test_ladder_is_complete_and_each_rung_builds_on_the_one_before():
    numbered = [p.stem for p in RUNGS if p.stem[:2].isdigit()]
    assert [int(n[:2]) for n in numbered] == list(range(1, 21))
    for prev, cur in zip(numbered, numbered[1:]):
        assert f"'{prev}.py'" in (REPO / 'config' / 'ladder' / f'{cur}.py').read_text()
    assert {p.stem for p in RUNGS} == set(CHANGES) == set(readme_ladder())


@pytest.mark.parametrize('path', RUNGS, ids=lambda p: p.stem)
def test_rung_builds_what_its_file_says_with_the_readme_param_count(path, train_defaults):
    config, model = rung(path, train_defaults)
    assert CHANGES[path.stem](model, config), f"{path.stem}: the built model lacks the rung's change"
    what, dataset, params = readme_ladder()[path.stem]
    assert dataset == config['dataset']
    assert model.get_num_params(non_embedding=False) == params  # the README's counts include the embeddings
    first_line = path.read_text().splitlines()[0]
    assert what.split(':')[0] in first_line  # the table row describes this file


@pytest.mark.parametrize('path', RUNGS, ids=lambda p: p.stem)
def test_rung_model_trains_with_finite_loss_and_gradients(path, train_defaults):
    _, model = rung(path, train_defaults, n_embd=32, block_size=16)
    opt = configure_adamw(model, 0.0, 1e-3, (0.9, 0.99), 'cpu')
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


@pytest.mark.parametrize('name', ['01_bigram', '07_four_blocks', '13_gpt2_bpe', '20_llama', 'names_03_wavenet'])
def test_train_py_builds_the_same_model(name, fake_datasets, tmp_path, train_defaults):
    path = REPO / 'config' / 'ladder' / f'{name}.py'
    p = run('train.py', path, '--max_iters=2', '--eval_interval=2', '--eval_iters=1', '--batch_size=2',
            '--device=cpu', '--compile=False', f'--data_dir={fake_datasets}', f'--out_dir={tmp_path}')
    _, model = rung(path, train_defaults)
    assert f"model: {model.config}\n" in p.stdout
    assert f"params {readme_ladder()[name][2]:,} total | {model.get_num_params():,} non-embedding" in p.stdout
    assert re.search(r'done 2 iters \| best val [\d.]+', p.stdout)


@pytest.mark.parametrize('path', RUNGS, ids=lambda p: p.stem)
def test_trace_follows_every_rung_stage_by_stage(path, train_defaults):
    _, model = rung(path, train_defaults, n_embd=32, block_size=16)
    idx = torch.randint(model.config.vocab_size, (2, 8))
    lines = trace_model(model, idx, idx)
    stages = [line.split('  ')[0] for line in lines]
    assert stages[:2] == ['ids', 'wte'] and 'lm_head' in stages and 'loss' in stages
    for i, block in enumerate(model.blocks):  # every block shows up, attention with its inner steps
        inner = ('attn q', 'attn scores', 'attn mask', 'attn softmax') if isinstance(block.mixer, CausalSelfAttention) \
            else ()
        assert all(f"block {i} {name}" in stages for name in inner) and any(s.startswith(f"block {i} ") for s in stages)
    grads = lines[lines.index(next(line for line in lines if line.startswith('gradients'))) + 1:]
    assert {line.split()[0] for line in grads} >= {'wte', 'lm_head' if model.wte.weight is not model.lm_head.weight
                                                   else 'wte'}
    assert all(p.grad is None for p in model.parameters())  # it leaves the model as it found it
