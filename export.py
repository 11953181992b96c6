"""
Export a mini-GPT checkpoint: to a Hugging Face folder that transformers loads, or to its int8 form.

    python export.py --out_dir=out-shakespeare-char               # best.pt -> out-shakespeare-char/hf/
    python export.py --out_dir=out-ladder/20_llama --export_dir=llama-hf
    python export.py --out_dir=out-shakespeare-char --quantize=int8   # best.pt -> out-shakespeare-char/best_int8.pt

The folder: model.safetensors, config.json and, for a BPE vocabulary (gpt2, cl100k_base), transformers' tokenizer
files. GPT-2-style models (LayerNorm, learned positions, GELU / ReLU / tanh MLP) become GPT2LMHeadModel, LLaMA-style
ones (RMSNorm, RoPE, SwiGLU, GQA / MQA) LlamaForCausalLM; a model neither can hold is one error naming the flags.
Then, in python:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained('out-shakespeare-char/hf')
    tokenizer = AutoTokenizer.from_pretrained('out-shakespeare-char/hf')   # BPE vocabularies

The int8 form (weight-only int8 linear layers, one scale per output channel: model.quantize_int8) is a mini-GPT
checkpoint that sample.py reads: python sample.py --ckpt=out-shakespeare-char/best_int8.pt
"""
import os
import sys

import hf
from common import find_checkpoint, load_checkpoint, or_exit, save_checkpoint
from configurator import configure
from model import GPT, quantize_int8

# -----------------------------------------------------------------------------
out_dir = 'out'  # where train.py wrote its checkpoints
ckpt = 'best'  # 'best', 'last', or a path to a .pt file
export_dir = ''  # the Hugging Face folder to write; '' = out_dir/hf (the int8 form: <checkpoint>_int8.pt beside it)
quantize = ''  # 'int8': write the int8 form (a mini-GPT checkpoint) instead of a Hugging Face folder
# -----------------------------------------------------------------------------
configure(globals())
if quantize not in ('', 'int8'):
    sys.exit(f"error: quantize must be '' (float) or 'int8', got '{quantize}'")
path = or_exit(find_checkpoint, out_dir, ckpt)
checkpoint = or_exit(load_checkpoint, path)
if checkpoint.get('quantize'):
    sys.exit(f"error: {path} is already {checkpoint['quantize']}; export the float checkpoint it came from")

if quantize:
    model = quantize_int8(GPT.from_checkpoint(checkpoint))
    target = path.removesuffix('.pt') + '_int8.pt'
    save_checkpoint({'model': model.state_dict(), 'model_args': checkpoint['model_args'], 'quantize': 'int8',
                     'tokenizer': checkpoint['tokenizer']}, target)
    print(f"{path} -> {target} (int8 linear layers): {os.path.getsize(target) / 1e6:,.2f} MB; sample from it with: "
          f"python sample.py --ckpt={target}")
    sys.exit(0)

target = export_dir or os.path.join(out_dir, 'hf')
try:
    architecture = hf.save(checkpoint, target)
except (ValueError, RuntimeError) as e:  # RuntimeError: a BPE tokenizer that cannot load (data/common.py says why)
    sys.exit(f"error: {path}: {e}")
print(f"{path} -> {target}/ ({architecture}): {', '.join(sorted(os.listdir(target)))}")
print(f"load it with: transformers.AutoModelForCausalLM.from_pretrained({target!r})")
