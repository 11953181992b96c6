"""
Hugging Face interop in one place: GPT-2 and Llama models in (train.py's and sample.py's init_from), mini-GPT
checkpoints out as folders that transformers.AutoModelForCausalLM.from_pretrained loads (export.py).

One table per format names each of our tensors, the tensors transformers keeps for it, and how one becomes the other;
the same table converts both ways. The conventions that differ:
- GPT-2 (GPT2LMHeadModel) keeps its linear layers as Conv1D, weights (in, out): ours are nn.Linear, (out, in).
- Llama (LlamaForCausalLM) has q, k and v apart; ours are one matmul, c_attn. Our RoPE rotates interleaved pairs
  (x[2i], x[2i+1]), as Meta's LLaMA code; transformers' rotates halves (x[i], x[i + hs/2]), so the rows of each q and
  k head are permuted (as transformers' convert_llama_weights_to_hf.py does).
- GPT-2 always has biases: a model without them is written with zero biases, which is the same model.
transformers is imported only on these paths, so the rest of the repository works without it.
"""
import base64
import json
import os
import shutil
import tempfile
from typing import Callable, NamedTuple

import torch

from data.common import EOT, Tokenizer
from model import GPTConfig, clean_state_dict

GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')  # OpenAI's GPT-2 on the Hugging Face hub
GPT2_VOCAB = 50257
TOKENIZER_FILE = 'mini_gpt_tokenizer.json'  # our tokenizer, in a folder export.py wrote: init_from reads it back

# the flags each format fixes: a mini-GPT model must have these to be written as one, and has them when read from one
FIXED = {
    'gpt2': dict(mixer='attn', attn_proj=True, norm='layernorm', norm_pos='pre', residual=True, pos_emb='learned',
                 qk_norm=False),
    'llama': dict(mixer='attn', attn_proj=True, ffn='swiglu', norm='rmsnorm', norm_pos='pre', residual=True,
                  pos_emb='rope', qk_norm=False),
}
ARCHITECTURE = {'gpt2': 'GPT2LMHeadModel', 'llama': 'LlamaForCausalLM'}
# GPTConfig field -> its config.json key, for the fields that are a plain rename
RENAMES = {
    'gpt2': dict(n_layer='n_layer', n_head='n_head', n_embd='n_embd', block_size='n_positions', vocab_size='vocab_size',
                 tie_weights='tie_word_embeddings'),
    'llama': dict(n_layer='num_hidden_layers', n_head='num_attention_heads', n_kv_head='num_key_value_heads',
                  n_embd='hidden_size', block_size='max_position_embeddings', vocab_size='vocab_size',
                  tie_weights='tie_word_embeddings', bias='attention_bias'),
}
GPT2_ACTIVATION = {'gelu': 'gelu', 'gelu_tanh': 'gelu_new', 'relu': 'relu', 'tanh': 'tanh'}  # our ffn -> GPT-2's name
NORM_EPS = 1e-5  # model.LayerNorm's and model.RMSNorm's epsilon


# ----------------------------------------------------------------------------- state dicts, both ways
class Conversion(NamedTuple):
    out: Callable  # one of our tensors -> a list of transformers' tensors
    back: Callable  # that list -> our tensor


SAME = Conversion(lambda t: [t], lambda ts: ts[0])
CONV1D = Conversion(lambda t: [t.t()], lambda ts: ts[0].t())  # GPT-2's Conv1D weights are (in, out)


def rope_halves(w, heads):
    """Rows (or entries) of q or k, (heads * hs, ...), from our pair order (x[2i], x[2i+1]) to transformers' halves."""
    return w.unflatten(0, (heads, -1, 2)).transpose(1, 2).flatten(0, 2)


def rope_pairs(w, heads):
    """rope_halves' inverse."""
    return w.unflatten(0, (heads, 2, -1)).transpose(1, 2).flatten(0, 2)


def llama_qkv(c):
    """Our c_attn (C + 2 kv, ...) <-> Llama's q_proj, k_proj (rows permuted for RoPE) and v_proj: weights and biases."""
    kv = c.n_kv_head * (c.n_embd // c.n_head)
    return Conversion(
        lambda t: [rope_halves(t[:c.n_embd], c.n_head), rope_halves(t[c.n_embd:c.n_embd + kv], c.n_kv_head),
                   t[c.n_embd + kv:]],
        lambda ts: torch.cat([rope_pairs(ts[0], c.n_head), rope_pairs(ts[1], c.n_kv_head), ts[2]]))


def table(fmt, c):
    """[(our tensor's name, [transformers' names], Conversion)] for every tensor of a model of GPTConfig c in format
    fmt ('gpt2' or 'llama'). A name of transformers' with spaces is several tensors (Llama's q, k, v)."""
    one = ('weight',)
    if fmt == 'gpt2':  # every linear layer and LayerNorm has a bias
        lin = norm = ('weight', 'bias')
        top = [('wte', 'transformer.wte', SAME, one), ('wpe', 'transformer.wpe', SAME, one)]
        block = [('norm_1', 'ln_1', SAME, norm), ('mixer.c_attn', 'attn.c_attn', CONV1D, lin),
                 ('mixer.c_proj', 'attn.c_proj', CONV1D, lin), ('norm_2', 'ln_2', SAME, norm),
                 ('ffn.c_fc', 'mlp.c_fc', CONV1D, lin), ('ffn.c_proj', 'mlp.c_proj', CONV1D, lin)]
        end, layers = [('ln_f', 'transformer.ln_f', SAME, norm)], 'transformer.h'
    else:  # RMSNorm has no bias; the linear layers have one when c.bias (attention_bias and mlp_bias)
        lin, norm = ('weight', 'bias') if c.bias else one, one
        top = [('wte', 'model.embed_tokens', SAME, one)]
        block = [('norm_1', 'input_layernorm', SAME, norm),
                 ('mixer.c_attn', 'self_attn.q_proj self_attn.k_proj self_attn.v_proj', llama_qkv(c), lin),
                 ('mixer.c_proj', 'self_attn.o_proj', SAME, lin), ('norm_2', 'post_attention_layernorm', SAME, norm),
                 ('ffn.w1', 'mlp.gate_proj', SAME, lin), ('ffn.w3', 'mlp.up_proj', SAME, lin),
                 ('ffn.c_proj', 'mlp.down_proj', SAME, lin)]
        end, layers = [('ln_f', 'model.norm', SAME, norm)], 'model.layers'
    rows = top + [(f'blocks.{i}.{ours}', ' '.join(f'{layers}.{i}.{t}' for t in theirs.split()), conv, params)
                  for i in range(c.n_layer) for ours, theirs, conv, params in block]
    rows += end + [('lm_head', 'lm_head', SAME, one)]
    return [(f'{ours}.{p}', [f'{t}.{p}' for t in theirs.split()], SAME if p == 'bias' and conv is CONV1D else conv)
            for ours, theirs, conv, params in rows for p in params]  # a bias converts as its weight's rows do


def to_hf(state, fmt, c):
    return {theirs: t.contiguous() for ours, names, conv in table(fmt, c)
            for theirs, t in zip(names, conv.out(state[ours]))}


def from_hf(state, fmt, c):
    return {ours: conv.back([state[n] for n in names]) for ours, names, conv in table(fmt, c)}


# ----------------------------------------------------------------------------- configs, both ways
def export_format(c):
    """'gpt2' or 'llama': the format that can hold a model of GPTConfig c; else a ValueError naming the flags that keep
    it from each."""
    why = {fmt: [f"{k}={v!r} (this model: {getattr(c, k)!r})" for k, v in fixed.items() if getattr(c, k) != v]
           for fmt, fixed in FIXED.items()}
    if c.ffn not in GPT2_ACTIVATION:
        why['gpt2'].append(f"ffn in {', '.join(GPT2_ACTIVATION)} (this model: {c.ffn!r})")
    if c.n_kv_head != c.n_head:
        why['gpt2'].append(f"n_kv_head=n_head (this model: {c.n_kv_head} of {c.n_head})")
    fmt = next((fmt for fmt, flags in why.items() if not flags), None)
    if fmt is None:
        raise ValueError("neither GPT2LMHeadModel nor LlamaForCausalLM can hold this model: " + '; '.join(
            f"{ARCHITECTURE[fmt]} needs {', '.join(flags)}" for fmt, flags in why.items()))
    return fmt


def hf_config(fmt, c, eot):
    """config.json of a model of GPTConfig c in format fmt, as transformers writes it for GPT-2 and Llama checkpoints on
    the hub. eot: the id of <|endoftext|> (bos and eos; None for a char vocabulary)."""
    cfg = {'architectures': [ARCHITECTURE[fmt]], 'model_type': fmt, 'bos_token_id': eot, 'eos_token_id': eot,
           **{theirs: getattr(c, ours) for ours, theirs in RENAMES[fmt].items()}}
    if fmt == 'gpt2':
        return dict(cfg, n_ctx=c.block_size, n_inner=int(c.ffn_mult * c.n_embd), activation_function=GPT2_ACTIVATION[
            c.ffn], layer_norm_epsilon=NORM_EPS, resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout)
    return dict(cfg, intermediate_size=round(2 / 3 * c.ffn_mult * c.n_embd), hidden_act='silu', rms_norm_eps=NORM_EPS,
                rope_theta=c.rope_theta, rope_scaling=None, mlp_bias=c.bias, head_dim=c.n_embd // c.n_head)


def hf_args(cfg, where):
    """GPTConfig fields (a dict, as checkpoints keep them) of a transformers config (its to_dict()); a ValueError names
    what mini-GPT cannot express."""
    fmt = cfg.get('model_type')
    if fmt not in FIXED:
        raise ValueError(f"{where} holds a '{fmt}' model; init_from reads GPT-2 (GPT2LMHeadModel) and Llama "
                         f"(LlamaForCausalLM) models")
    args = {**{ours: cfg[theirs] for ours, theirs in RENAMES[fmt].items()}, **FIXED[fmt]}
    C, head_dim = args['n_embd'], args['n_embd'] // args['n_head']
    if fmt == 'gpt2':
        activations = {**{v: k for k, v in GPT2_ACTIVATION.items()}, 'gelu_pytorch_tanh': 'gelu_tanh'}
        hidden = cfg.get('n_inner') or 4 * C
        args.update(bias=True, n_kv_head=args['n_head'], ffn=activations.get(cfg['activation_function']),
                    ffn_mult=hidden / C)
        checks = [(args['ffn'] is None, f"activation_function={cfg['activation_function']!r}"),
                  (cfg['layer_norm_epsilon'] != NORM_EPS, f"layer_norm_epsilon={cfg['layer_norm_epsilon']}"),
                  (not cfg.get('scale_attn_weights', True), "scale_attn_weights=False"),
                  (cfg.get('scale_attn_by_inverse_layer_idx', False), "scale_attn_by_inverse_layer_idx=True"),
                  (int(args['ffn_mult'] * C) != hidden, f"n_inner={hidden}")]
    else:
        rope = cfg.get('rope_parameters') or {'rope_theta': cfg.get('rope_theta', 10000.0),
                                              **(cfg.get('rope_scaling') or {})}
        hidden = cfg['intermediate_size']
        args.update(ffn_mult=1.5 * hidden / C, rope_theta=rope['rope_theta'])
        checks = [(cfg['hidden_act'] != 'silu', f"hidden_act={cfg['hidden_act']!r}"),
                  (cfg['rms_norm_eps'] != NORM_EPS, f"rms_norm_eps={cfg['rms_norm_eps']}"),
                  (rope.get('rope_type', 'default') != 'default', f"rope_type={rope.get('rope_type')!r}"),
                  ((cfg.get('head_dim') or head_dim) != head_dim, f"head_dim={cfg.get('head_dim')}"),
                  (cfg.get('mlp_bias', False) != args['bias'], f"mlp_bias={cfg.get('mlp_bias')}"),
                  (round(2 / 3 * args['ffn_mult'] * C) != hidden, f"intermediate_size={hidden}")]
    problems = [what for bad, what in checks if bad]
    if problems:
        raise ValueError(f"{where}: mini-GPT has no model with {', '.join(problems)} (its norms' epsilon is "
                         f"{NORM_EPS}; GPT-2's activation one of {', '.join(GPT2_ACTIVATION.values())}; Llama's rope "
                         f"unscaled, head_dim = hidden_size / num_attention_heads, attention_bias = mlp_bias)")
    GPTConfig(**args)  # every field checked
    return args


# ----------------------------------------------------------------------------- in: init_from
def import_transformers(what):
    try:
        import transformers
    except ImportError:
        raise ValueError(f"{what} needs transformers: pip install transformers safetensors") from None
    return transformers


def load(name_or_path, block_size=None):
    """A GPT-2 or Llama model that transformers loads, as a checkpoint of ours: {'model', 'model_args', 'tokenizer',
    'pretrained'}. name_or_path: one of GPT2_NAMES (fetched from the hub, or found in its cache) or a local folder.
    block_size, at most the model's, crops the position table (nanoGPT's crop_block_size). 'tokenizer' is None when
    mini-GPT has not got the model's (tokenizer_of says which it is). A ValueError says what is wrong."""
    if name_or_path not in GPT2_NAMES and not os.path.isdir(name_or_path):
        raise ValueError(f"init_from={name_or_path!r} is none of 'scratch', 'resume', a GPT-2 name "
                         f"({', '.join(GPT2_NAMES)}) or a folder")
    transformers = import_transformers(f"init_from={name_or_path!r}")
    try:
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:  # files missing or not downloadable, a config transformers does not know
        why = str(e).strip().split('\n')[0]
        if not os.path.isdir(name_or_path):
            raise ValueError(f"cannot fetch {name_or_path!r} from the Hugging Face hub ({why}); offline, pass a local "
                             f"folder that holds it (save_pretrained's): --init_from=PATH") from None
        raise ValueError(f"{name_or_path} is not a model folder transformers can load ({why})") from None
    cfg = hf_model.config.to_dict()
    args = hf_args(cfg, name_or_path)
    state = from_hf(hf_model.state_dict(), cfg['model_type'], GPTConfig(**args))
    if block_size is not None:
        if block_size > args['block_size']:
            raise ValueError(f"block_size={block_size} is longer than the context of {name_or_path} "
                             f"({args['block_size']}); pass --block_size={args['block_size']} or less")
        args['block_size'] = block_size
        if 'wpe.weight' in state:
            state['wpe.weight'] = state['wpe.weight'][:block_size]
    return {'model': state, 'model_args': args, 'tokenizer': recorded_tokenizer(name_or_path, args['vocab_size']),
            'pretrained': name_or_path}


def recorded_tokenizer(path, vocab_size):
    """A model's tokenizer as checkpoints keep it: the one export.py recorded in the folder, else GPT-2's for a
    vocabulary of GPT-2's size, else None."""
    recorded = os.path.join(path, TOKENIZER_FILE)
    if os.path.isfile(recorded):
        with open(recorded) as f:
            return json.load(f)
    return {'tokenizer': 'gpt2', 'vocab_size': GPT2_VOCAB} if vocab_size == GPT2_VOCAB else None


def tokenizer_of(checkpoint):
    """The tokenizer of a loaded model; a ValueError saying what the folder has when mini-GPT cannot read it."""
    if checkpoint['tokenizer'] is not None:
        return checkpoint['tokenizer']
    path, vocab = checkpoint['pretrained'], checkpoint['model_args']['vocab_size']
    try:
        with open(os.path.join(path, 'tokenizer_config.json')) as f:
            has = f"its tokenizer is {json.load(f).get('tokenizer_class') or 'not named'}"
    except (OSError, ValueError):
        has = "it has no tokenizer_config.json"
    raise ValueError(f"{path} has a vocabulary of {vocab:,} tokens and {has}: mini-GPT's tokenizers are char, bpe:N, "
                     f"gpt2 and cl100k_base, so init_from takes models with GPT-2's vocabulary ({GPT2_VOCAB:,} tokens) "
                     f"and folders export.py wrote")


# ----------------------------------------------------------------------------- out: export.py
def save(checkpoint, folder):
    """Write a mini-GPT checkpoint (float weights) as a folder that transformers loads: model.safetensors, config.json,
    our tokenizer (TOKENIZER_FILE), and for a BPE vocabulary transformers' tokenizer.json. A padded vocabulary is cut
    back to the tokenizer's size. Written to folder.tmp, then renamed over folder. Returns the architecture's name;
    a ValueError when neither format can hold the model."""
    c = GPTConfig(**checkpoint['model_args'])
    fmt = export_format(c)
    tokenizer = checkpoint['tokenizer']
    c = GPTConfig(**{**checkpoint['model_args'], 'vocab_size': tokenizer['vocab_size']})
    state = clean_state(checkpoint['model'], c.vocab_size)
    if fmt == 'gpt2' and not c.bias:  # GPT-2 always has biases: zeros are the same model
        state.update({ours: torch.zeros(state[ours.removesuffix('bias') + 'weight'].size(0))
                      for ours, _, _ in table(fmt, c) if ours.endswith('.bias')})
    hf_state = to_hf(state, fmt, c)
    if c.tie_weights:  # one tensor: transformers ties lm_head to the embedding itself
        del hf_state['lm_head.weight']
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ValueError("export needs safetensors: pip install safetensors") from None
    tmp = folder.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(hf_state, os.path.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(os.path.join(tmp, 'model.safetensors'), 0o666 & ~umask)  # safetensors writes 0600; as any file, 0644
    eot = None if tokenizer['tokenizer'] == 'char' else Tokenizer(tokenizer).eot
    write_json(os.path.join(tmp, 'config.json'), hf_config(fmt, c, eot))
    write_json(os.path.join(tmp, TOKENIZER_FILE), tokenizer)
    if tokenizer['tokenizer'] != 'char':
        write_bpe_tokenizer(tokenizer, tmp, c.block_size)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return ARCHITECTURE[fmt]


def clean_state(state, vocab_size):
    """A checkpoint's weights without compile / DDP prefixes, the embedding and output rows past vocab_size cut off."""
    state = clean_state_dict(state)
    return {k: v[:vocab_size].clone() if k in ('wte.weight', 'lm_head.weight') else v for k, v in state.items()}


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)


def write_bpe_tokenizer(tokenizer, folder, block_size):
    """tokenizer.json and tokenizer_config.json for a BPE vocabulary: AutoTokenizer.from_pretrained(folder) then
    encodes text to the ids our Tokenizer gives. bpe:N (data/common.py's train_bpe) is a Hugging Face tokenizer
    already: its JSON as it is; tiktoken's gpt2 / cl100k_base (loaded offline by data/common.py) are converted by
    transformers' TikTokenConverter from tiktoken's merge ranks. Every BPE here ends documents with <|endoftext|>."""
    if 'bpe' in tokenizer:
        with open(os.path.join(folder, 'tokenizer.json'), 'w') as f:
            f.write(tokenizer['bpe'])
    else:
        import_transformers('export of a BPE vocabulary')
        from transformers.convert_slow_tokenizer import TikTokenConverter
        kind = tokenizer['tokenizer']
        enc = Tokenizer({'tokenizer': kind}).enc
        with tempfile.TemporaryDirectory() as tmp:
            ranks = os.path.join(tmp, f'{kind}.tiktoken')  # tiktoken's file format: each token in base64, its rank
            with open(ranks, 'wb') as f:
                f.writelines(base64.b64encode(t) + b' %d\n' % r for t, r in sorted(enc._mergeable_ranks.items(),
                                                                                   key=lambda kv: kv[1]))
            converter = TikTokenConverter(vocab_file=ranks, pattern=enc._pat_str,
                                          extra_special_tokens=enc._special_tokens)
            converter.converted().save(os.path.join(folder, 'tokenizer.json'))
    write_json(os.path.join(folder, 'tokenizer_config.json'), {'tokenizer_class': 'PreTrainedTokenizerFast',
                                                               'bos_token': EOT, 'eos_token': EOT,
                                                               'model_max_length': block_size})
