"""Interop: transformers' GPT-2 and Llama folders in (init_from), our checkpoints out (export.py), int8 weights, and
wandb's keys. transformers is imported once for the module, and the scripts run in this process (runpy): an import of
transformers costs seconds."""
import copy
import os
import csv
import runpy
import shutil
import sys
import types
from dataclasses import asdict

import pytest
import torch

import hf
from conftest import SAMPLE_TEXT, as_script
from data.common import Tokenizer
from common import load_checkpoint, save_checkpoint
from model import GPT, GPTConfig, Int8Linear, quantize_int8

GPT2 = {'tokenizer': 'gpt2', 'vocab_size': 50257}
CHARS = sorted(set(SAMPLE_TEXT))
CHAR = {'tokenizer': 'char', 'vocab_size': len(CHARS), 'chars': CHARS}


def script(name, *args):
    """Run one of the repo's scripts in this process as `python name args` would (conftest.as_script); an error exit
    (SystemExit with its message) is raised as it is."""
    with as_script(name, *args) as path:
        try:
            runpy.run_path(path, run_name='__main__')
        except SystemExit as e:
            if e.code not in (None, 0):
                raise


def perturbed(model, std):
    """Random values on every weight: a fresh model's zero biases and unit norm gains would hide a mixed-up mapping."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
    return model.eval()


def ours(checkpoint):
    model = GPT(GPTConfig(**checkpoint['model_args']))
    model.load_state_dict(checkpoint['model'])
    return model.eval()


@pytest.fixture(scope='module')
def tf():
    return pytest.importorskip('transformers')


@pytest.fixture(scope='module')
def gpt2_folder(tf, tmp_path_factory):
    """A tiny random GPT2LMHeadModel (GPT-2's vocabulary, tanh GELU), saved as transformers saves models."""
    torch.manual_seed(0)
    model = perturbed(tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64)), 0.1)
    path = tmp_path_factory.mktemp('hf') / 'gpt2'
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope='module')
def llama_folder(tf, tmp_path_factory):
    """A tiny random LlamaForCausalLM: grouped-query attention, RoPE with theta 500, an untied output layer, a hidden
    size that is no round multiple of the width, and a vocabulary mini-GPT has no tokenizer for."""
    torch.manual_seed(0)
    model = perturbed(tf.LlamaForCausalLM(tf.LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
        vocab_size=70, max_position_embeddings=64, rope_theta=500.0, rms_norm_eps=1e-5)), 0.2)
    path = tmp_path_factory.mktemp('hf') / 'llama'
    model.save_pretrained(path)
    return path, model


# ----------------------------------------------------------------------------- in: init_from=PATH
@pytest.mark.parametrize('folder', ['gpt2_folder', 'llama_folder'])
def test_a_transformers_folder_loads_with_transformers_logits(folder, request):
    path, theirs = request.getfixturevalue(folder)
    idx = torch.randint(theirs.config.vocab_size, (2, 24))
    with torch.no_grad():
        expected = theirs(idx).logits
        assert torch.allclose(ours(hf.load(str(path)))(idx)[0], expected, atol=1e-4)
    assert expected.abs().max() > 1  # logits far from zero: a wrong weight would show


def test_the_tokenizer_of_a_folder_is_gpt2_for_gpt2s_vocabulary_else_named(gpt2_folder, llama_folder):
    assert hf.load(str(gpt2_folder[0]))['tokenizer'] == GPT2
    with pytest.raises(ValueError, match="vocabulary of 70 tokens and it has no tokenizer_config.json: mini-GPT's "
                                         "tokenizers are char, bpe:N, gpt2 and cl100k_base"):
        hf.tokenizer_of(hf.load(str(llama_folder[0])))


def test_sample_greedy_from_a_folder_is_transformers_greedy(gpt2_folder, capsys):
    path, theirs = gpt2_folder
    script('sample.py', f'--init_from={path}', '--start=First Citizen:', '--temperature=0', '--num_samples=1',
           '--max_new_tokens=12', '--device=cpu')
    gpt2 = Tokenizer(GPT2)
    prompt = gpt2.encode('First Citizen:')
    expected = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0].tolist()
    assert len(expected) == len(prompt) + 12 and gpt2.decode(expected) + '\n' in capsys.readouterr().out


def test_gpt2_by_name_offline_is_one_error_line(tf, monkeypatch, tmp_path):
    import huggingface_hub.constants as hub
    monkeypatch.setattr(hub, 'HF_HUB_OFFLINE', True)  # what HF_HUB_OFFLINE=1 sets when the hub is imported
    monkeypatch.setattr(hub, 'HF_HUB_CACHE', str(tmp_path))  # and nothing cached
    with pytest.raises(SystemExit, match=r"^error: cannot fetch 'gpt2' from the Hugging Face hub \(.*\); offline, "
                                         r"pass a local folder that holds it \(save_pretrained's\): --init_from=PATH$"):
        script('sample.py', '--init_from=gpt2', '--device=cpu')


@pytest.mark.parametrize('init_from, message', [
    ('gtp2', "error: init_from='gtp2' is none of 'scratch', 'resume', a GPT-2 name (gpt2, gpt2-medium, gpt2-large, "
             "gpt2-xl) or a folder"),
    ('the GPT-2 folder', "reads gpt2 tokens (50,257); dataset 'shakespeare_char' has char tokens (34): fine-tune on a "
                         "dataset prepared with its tokenizer"),
])
def test_init_from_what_train_py_cannot_fine_tune_is_one_error_line(gpt2_folder, tmp_path, init_from, message):
    (tmp_path / 'input.txt').write_text(SAMPLE_TEXT * 20)
    script('data/shakespeare_char/prepare.py', '--input', tmp_path / 'input.txt', '--out_dir',
           tmp_path / 'data' / 'shakespeare_char')
    init_from = gpt2_folder[0] if init_from == 'the GPT-2 folder' else init_from
    with pytest.raises(SystemExit) as e:
        script('train.py', f'--init_from={init_from}', f'--data_dir={tmp_path / "data"}',
               f'--out_dir={tmp_path / "out"}')
    assert e.value.code.startswith('error: ') and message in e.value.code and not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------- fine-tuning, and wandb's keys
@pytest.fixture(scope='module')
def finetuned(gpt2_folder, tmp_path_factory):
    """train.py --init_from=<the GPT-2 folder> on a GPT-2 BPE dataset for 6 steps, with wandb_log on and a fake wandb
    that records its calls: (out_dir, the calls, the train.py arguments)."""
    tmp = tmp_path_factory.mktemp('finetune')
    (tmp / 'input.txt').write_text(SAMPLE_TEXT * 20)
    script('data/shakespeare/prepare.py', '--input', tmp / 'input.txt', '--out_dir', tmp / 'data' / 'shakespeare')
    calls = []
    fake = types.ModuleType('wandb')
    fake.init = lambda **kw: calls.append(('init', kw))
    fake.log = lambda data, step=None: calls.append(('log', data, step))
    fake.finish = lambda: calls.append(('finish',))
    args = ['--device=cpu', '--compile=False', '--dataset=shakespeare', f'--data_dir={tmp / "data"}', '--block_size=32',
            '--batch_size=4', '--eval_interval=3', '--eval_iters=2', '--learning_rate=1e-3', '--warmup_iters=0',
            '--optim=adamw']
    with pytest.MonkeyPatch.context() as m:
        m.setitem(sys.modules, 'wandb', fake)
        script('train.py', *args, f'--init_from={gpt2_folder[0]}', f'--out_dir={tmp / "out"}', '--max_iters=6',
               '--wandb_log=True', '--wandb_project=p', '--wandb_run_name=r')
    return tmp / 'out', calls, args


def test_finetune_from_a_folder_and_resume(finetuned, gpt2_folder, tmp_path):
    out, _, args = finetuned
    ckpt = load_checkpoint(out / 'last.pt')
    assert ckpt['pretrained'] == str(gpt2_folder[0]) and ckpt['tokenizer'] == GPT2
    assert {k: ckpt['model_args'][k] for k in ('n_layer', 'n_head', 'n_embd', 'ffn', 'block_size')} == \
        dict(n_layer=2, n_head=2, n_embd=32, ffn='gelu_tanh', block_size=32)  # the folder's model, cropped to 32
    with open(out / 'evals.csv') as f:
        losses = [float(r['train_loss']) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0] - 0.5
    # a resume takes the model from the checkpoint, not from the config's keys (train.py's defaults here)
    shutil.copytree(out, tmp_path / 'out')
    script('train.py', *args, f'--out_dir={tmp_path / "out"}', '--max_iters=9', '--init_from=resume')
    assert load_checkpoint(tmp_path / 'out' / 'last.pt')['iter_num'] == 9


def test_wandb_gets_the_keys_and_the_csv_numbers(finetuned):
    out, calls, _ = finetuned
    (kind, init), *logs, finish = calls
    assert kind == 'init' and init['project'] == 'p' and init['name'] == 'r' and init['config']['max_iters'] == 6
    with open(out / 'evals.csv') as f:
        rows = list(csv.DictReader(f))
    assert [call[1:] for call in logs] == [({k: float(v) for k, v in r.items()}, int(r['iter'])) for r in rows]
    assert len(rows) == 3 and finish == ('finish',)


def test_wandb_log_without_wandb_is_one_error_at_startup(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'wandb', None)  # `import wandb` raises ImportError
    with pytest.raises(SystemExit, match=r"^error: wandb_log=True needs wandb: pip install wandb \(or "):
        script('train.py', '--wandb_log=True', f'--out_dir={tmp_path / "out"}', f'--data_dir={tmp_path}')
    assert not (tmp_path / 'out').exists()  # before the data (there is none) and anything written


# ----------------------------------------------------------------------------- out: export.py
EXPORTS = {  # GPT-2 style as train.py's default (no bias, tied, exact GELU) with GPT-2's vocabulary padded to 50304;
    # LLaMA style with grouped-query attention, RoPE, SwiGLU, an untied output layer, a char vocabulary padded to 64
    'GPT2LMHeadModel': (dict(n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=50304, bias=False), GPT2),
    'LlamaForCausalLM': (dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=32, vocab_size=64, bias=False,
                              pos_emb='rope', norm='rmsnorm', ffn='swiglu', tie_weights=False, rope_theta=300.0), CHAR),
}


@pytest.fixture(scope='module')
def exported(tf, tmp_path_factory):
    """Each of EXPORTS: a random model of ours, saved as train.py saves checkpoints, through export.py: {architecture:
    (our model, transformers' model of the folder, the folder, our tokenizer)}."""
    out = {}
    for architecture, (args, tokenizer) in EXPORTS.items():
        torch.manual_seed(0)
        config = GPTConfig(**args)
        model = perturbed(GPT(config), 0.05)
        tmp = tmp_path_factory.mktemp('export')
        save_checkpoint({'model': model.state_dict(), 'model_args': asdict(config), 'tokenizer': tokenizer},
                        tmp / 'best.pt')
        script('export.py', f'--out_dir={tmp}')
        out[architecture] = model, tf.AutoModelForCausalLM.from_pretrained(tmp / 'hf').eval(), tmp / 'hf', tokenizer
    return out


@pytest.mark.parametrize('architecture', EXPORTS)
def test_an_export_loads_in_transformers_with_our_logits(exported, architecture):
    model, theirs, folder, tokenizer = exported[architecture]
    assert type(theirs).__name__ == architecture and theirs.config.vocab_size == tokenizer['vocab_size']  # cut back
    umask = os.umask(0)
    os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(  # readable as any file
        (p.name for p in folder.iterdir()), 0o666 & ~umask)
    idx = torch.randint(tokenizer['vocab_size'], (2, 24))
    with torch.no_grad():
        expected = model(idx)[0][..., :tokenizer['vocab_size']]
        assert torch.allclose(theirs(idx).logits, expected, atol=1e-4) and expected.abs().max() > 0.5


@pytest.mark.parametrize('architecture', EXPORTS)
def test_greedy_generation_agrees_token_for_token(exported, architecture):
    _, theirs, folder, tokenizer = exported[architecture]
    back = hf.load(str(folder))  # and init_from reads the folder back, tokenizer included
    assert back['tokenizer'] == tokenizer
    prompt = torch.randint(tokenizer['vocab_size'], (1, 4))
    expected = theirs.generate(prompt, max_new_tokens=20, do_sample=False)
    greedy = ours(back).generate(prompt, 20, temperature=0, kv_cache=True)
    assert expected.size(1) == 24 and torch.equal(greedy, expected)


def test_an_exported_bpe_vocabulary_encodes_as_ours(tf, exported):
    text = SAMPLE_TEXT + "Café, naïve: 1234 tokens!\n"
    folder = exported['GPT2LMHeadModel'][2]
    assert tf.AutoTokenizer.from_pretrained(folder).encode(text) == Tokenizer(GPT2).encode(text)


def test_a_model_neither_format_can_hold_is_one_error_naming_the_flags(tmp_path):
    config = GPTConfig(block_size=8, vocab_size=len(CHARS), n_layer=1, n_head=2, n_embd=8, norm_pos='post',
                       mixer='mean')
    save_checkpoint({'model': GPT(config).state_dict(), 'model_args': asdict(config), 'tokenizer': CHAR},
                    tmp_path / 'best.pt')
    with pytest.raises(SystemExit) as e:
        script('export.py', f'--out_dir={tmp_path}')
    message = e.value.code
    assert message.startswith('error: ') and '\n' not in message and not (tmp_path / 'hf').exists()
    gpt2, llama = message.split('; LlamaForCausalLM needs ')
    assert "GPT2LMHeadModel needs mixer='attn' (this model: 'mean'), norm_pos='pre' (this model: 'post')" in gpt2
    assert "pos_emb='rope' (this model: 'learned')" in llama and "norm='rmsnorm' (this model: 'layernorm')" in llama


# ----------------------------------------------------------------------------- int8
def test_int8_weights_are_close_smaller_and_sample_with_the_cache(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=64, n_layer=2, n_head=4, n_embd=64)).eval()
    int8 = quantize_int8(copy.deepcopy(model))
    assert [type(m.mixer.c_attn) for m in int8.blocks] == [Int8Linear, Int8Linear]
    assert int8.lm_head.weight is int8.wte.weight  # the output layer tied to the embedding stays float
    idx = torch.randint(64, (2, 32))
    with torch.no_grad():
        a, b = model(idx)[0], int8(idx)[0]
    assert 0 < (a - b).abs().max() < 0.01 * a.abs().max()
    for name, m in (('float', model), ('int8', int8)):
        torch.save(m.state_dict(), tmp_path / f'{name}.pt')
    # a byte a weight instead of four in the linear layers; the embeddings, biases and scales stay float
    assert (tmp_path / 'float.pt').stat().st_size > 2.5 * (tmp_path / 'int8.pt').stat().st_size
    with torch.no_grad():
        cached, plain = (int8.generate(idx[:, :3], 40, temperature=0, kv_cache=kv) for kv in (True, False))
    assert torch.equal(cached, plain)


def test_the_int8_checkpoint_export_writes_samples_as_quantize_int8(tmp_path, capsys):
    torch.manual_seed(0)
    config = GPTConfig(block_size=16, vocab_size=len(CHARS), n_layer=2, n_head=2, n_embd=32, tie_weights=False)
    save_checkpoint({'model': perturbed(GPT(config), 0.1).state_dict(), 'model_args': asdict(config),
                     'tokenizer': CHAR}, tmp_path / 'best.pt')
    script('export.py', f'--out_dir={tmp_path}', '--quantize=int8')
    int8 = load_checkpoint(tmp_path / 'best_int8.pt')
    assert int8['quantize'] == 'int8' and int8['model']['blocks.0.ffn.c_fc.weight'].dtype == torch.int8
    capsys.readouterr()
    args = ['--device=cpu', '--start=All', '--num_samples=1', '--max_new_tokens=10', '--show_probs']  # 5 per step
    samples = []
    for source in ([f'--out_dir={tmp_path}', '--quantize=int8'], [f'--ckpt={tmp_path / "best_int8.pt"}'],
                   [f'--out_dir={tmp_path}']):
        script('sample.py', *source, *args)
        samples.append(capsys.readouterr().out)
    assert samples[0] == samples[1] != samples[2]  # int8's probabilities, not float's
    assert samples[0].count(' <- ') == 10
