"""
Sample from a trained mini-GPT.

    python sample.py --start "ROMEO:" --num_samples=3 --max_new_tokens=300
    python sample.py --start FILE:prompt.txt --temperature=0.8 --top_k=50 --out_dir=out
    python sample.py --start "One day" --stop_at_eot   # a TinyStories model: one story each
"""
import os
import sys
from contextlib import nullcontext

import torch

from configurator import configure
from data.common import Tokenizer
from model import GPT, GPTConfig, clean_state_dict

# -----------------------------------------------------------------------------
out_dir = 'out'  # where train.py wrote its checkpoints
ckpt = 'best'  # 'best' (lowest val loss) or 'last'
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3
max_new_tokens = 500
temperature = 0.8  # 1.0 = the model's distribution, lower = more conservative, 0 = greedy
top_k = 200  # keep only the k most likely tokens; 0 = no limit
stop_at_eot = False  # end each sample at its first <|endoftext|> (gpt2 and cl100k_base tokenizers)
seed = 1337
device = None  # None: cuda, then mps, then cpu
dtype = None  # None: bfloat16 on CUDA where supported, else float32
# -----------------------------------------------------------------------------
configure(globals())
if device is None:
    device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
device_type = 'cuda' if device.startswith('cuda') else 'mps' if device.startswith('mps') else 'cpu'
if dtype is None:
    dtype = 'bfloat16' if device_type == 'cuda' and torch.cuda.is_bf16_supported() else 'float32'
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=ptdtype)
if temperature < 0:
    sys.exit(f"error: temperature must be >= 0 (0 = greedy), got {temperature}")
torch.manual_seed(seed)

path = os.path.join(out_dir, f'{ckpt}.pt') if ckpt in ('best', 'last') else ckpt
if not os.path.exists(path):
    sys.exit(f"error: no checkpoint at {path}; train one first: python train.py --out_dir={out_dir}")
checkpoint = torch.load(path, map_location='cpu', weights_only=True)
model = GPT(GPTConfig(**checkpoint['model_args']))
model.load_state_dict(clean_state_dict(checkpoint['model']))
model.eval().to(device)
try:
    tok = Tokenizer(checkpoint['tokenizer'])  # the dataset's tokenizer, which train.py records in the checkpoint
except (ValueError, RuntimeError) as e:
    sys.exit(f"error: {e}")
if stop_at_eot and tok.eot is None:
    sys.exit(f"error: stop_at_eot needs a tokenizer with <|endoftext|> (gpt2, cl100k_base); this checkpoint's is "
             f"{tok.kind}")


def mask_padding(module, inputs, logits):  # a padded vocabulary (train.py's vocab_size): never sample the padding
    logits[..., tok.vocab_size:] = float('-inf')


if tok.vocab_size < model.config.vocab_size:
    model.lm_head.register_forward_hook(mask_padding)

if start.startswith('FILE:'):
    with open(start[5:], encoding='utf-8') as f:
        start = f.read()
if not start:
    sys.exit("error: the prompt is empty; give some text with --start")
try:
    start_ids = tok.encode(start)
except ValueError as e:
    sys.exit(f"error: cannot encode the prompt: {e}")
x = torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...]

with torch.no_grad(), ctx:
    for k in range(num_samples):
        y = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k or None)
        print(f"---------- sample {k + 1}/{num_samples} ----------")
        ids = y[0].tolist()
        if stop_at_eot and tok.eot in ids[len(start_ids):]:
            ids = ids[:ids.index(tok.eot, len(start_ids))]
        print(tok.decode(ids))
print("----------")
