"""
Sample from a trained mini-GPT.

    python sample.py --start "ROMEO:" --num_samples=3 --max_new_tokens=300   # the most recently trained model
    python sample.py --start FILE:prompt.txt --temperature=0.8 --top_p=0.9 --out_dir=out
    python sample.py --start "One day" --stop_at_eot      # a TinyStories model: one story each
    python sample.py --start "ROMEO:" --show_probs --max_new_tokens=20   # the top-5 candidates at every step
    python sample.py --start "ROMEO:" --attention=attn.png               # attention maps of the prompt
    python sample.py --init_from=gpt2 --start "Hello, I'm a language model,"   # OpenAI's GPT-2 (needs transformers)
    python sample.py --init_from=PATH --temperature=0     # a Hugging Face folder (GPT-2 or Llama), offline
    python sample.py --start "ROMEO:" --quantize=int8     # weight-only int8 linear layers

Without --out_dir it samples from the most recently trained out*/ directory here, and says which.
Samples are generated together in one batch with a key/value cache (--kv_cache=False runs the plain
reference path). A single sample streams to the terminal as it is produced.
"""
import glob
import os
import sys

import torch

import hf
from common import device_setup, find_checkpoint, load_checkpoint, or_exit, pyplot
from configurator import configure
from data.common import Tokenizer, read_text
from model import GPT, quantize_int8

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume': a checkpoint of train.py (out_dir, ckpt); or pretrained weights: a GPT-2 name
# (gpt2, gpt2-medium, gpt2-large, gpt2-xl; needs transformers) or a Hugging Face folder, GPT-2 or Llama (hf.py)
out_dir = ''  # where train.py wrote its checkpoints; '' = the most recently trained out*/ directory here
ckpt = 'best'  # 'best' (lowest val loss), 'last', or a path to a .pt file
quantize = ''  # 'int8': weight-only int8 linear layers, one scale per output channel (model.quantize_int8)
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3
max_new_tokens = 500
temperature = 0.8  # 1.0 = the model's distribution, lower = more conservative, 0 = greedy
top_k = 200  # keep only the k most likely tokens; 0 = no limit
top_p = 1.0  # keep the smallest set of likeliest tokens whose probabilities reach top_p (nucleus); 1.0 = all
stop_at_eot = False  # end each sample at its first <|endoftext|> (gpt2 and cl100k_base tokenizers)
kv_cache = True  # prefill the prompt once, then decode one token at a time; False = the plain reference path
show_probs = False  # print the top-5 candidates and their probabilities for every generated token (first sample)
attention = ''  # save the prompt's attention maps per layer and head to this .png (ASCII when matplotlib is missing)
seed = 1337
device = None  # None: cuda, then mps, then cpu
dtype = None  # None: bfloat16 on CUDA where supported, else float16; float32 off CUDA (common.device_setup)
compile = False  # torch.compile the one-token decode step (CUDA)
# -----------------------------------------------------------------------------
configure(globals())
if temperature < 0:
    sys.exit(f"error: temperature must be >= 0 (0 = greedy), got {temperature}")
if not 0 < top_p <= 1:
    sys.exit(f"error: top_p must be in (0, 1] (1 = no nucleus cut), got {top_p}")
if top_k < 0:
    sys.exit(f"error: top_k must be >= 0 (0 = no limit), got {top_k}")
if num_samples < 1 or max_new_tokens < 0:
    sys.exit("error: num_samples must be >= 1 and max_new_tokens >= 0")
if quantize not in ('', 'int8'):
    sys.exit(f"error: quantize must be '' (float) or 'int8', got '{quantize}'")
device, device_type, dtype, ctx, _ = or_exit(device_setup, device, dtype)
torch.manual_seed(seed)


def latest_out_dir():
    """The out*/ directory here (or one below it, as out-ladder/08_residual) with a {ckpt}.pt whose newest checkpoint
    was written last: the model trained most recently."""
    folders = [os.path.dirname(p) for p in glob.glob(f'out*/{ckpt}.pt') + glob.glob(f'out*/*/{ckpt}.pt')]
    written = {f: max(os.path.getmtime(p) for p in glob.glob(os.path.join(glob.escape(f), '*.pt'))) for f in folders}
    return max(written, key=written.get) if written else None


def checkpoint_path():
    """out_dir's {ckpt}.pt, or ckpt itself when it is a path; without out_dir, the most recently trained out*/ here."""
    folder = out_dir
    if ckpt in ('best', 'last') and not folder:
        folder = latest_out_dir()
        if folder is None:
            sys.exit("error: no checkpoint in any out*/ directory here; train one first (python train.py), or name "
                     "one with --out_dir")
        print(f"note: sampling from {os.path.join(folder, f'{ckpt}.pt')}, the most recently trained here "
              f"(--out_dir to choose another)", file=sys.stderr)
    return or_exit(find_checkpoint, folder, ckpt)


if init_from == 'resume':
    checkpoint = or_exit(load_checkpoint, checkpoint_path())
else:  # pretrained weights, through transformers
    checkpoint = or_exit(hf.load, init_from)
    checkpoint['tokenizer'] = or_exit(hf.tokenizer_of, checkpoint)
# the manual attention path can hand back its probabilities for --attention
model = GPT.from_checkpoint(checkpoint, **({'attn_impl': 'manual'} if attention else {}))
if quantize:
    quantize_int8(model)
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
    start = read_text(start[5:])  # one error line for a missing, empty or non-UTF-8 file
if not start:
    sys.exit("error: the prompt is empty; give some text with --start")
try:
    start_ids = tok.encode(start)
except ValueError as e:
    sys.exit(f"error: cannot encode the prompt: {e}")
if len(start_ids) > model.config.block_size:
    print(f"note: the prompt has {len(start_ids)} tokens; the model sees only the last {model.config.block_size}",
          file=sys.stderr)
x = torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...]


def show(ids):
    return repr(tok.decode([ids]))


def attention_maps(path):
    """Run the prompt once through the manual attention path; plot each layer's heads (ASCII without matplotlib)."""
    attns = [b.mixer for b in model.blocks if hasattr(b.mixer, 'keep_probs')]
    if not attns:
        sys.exit(f"error: mixer='{model.config.mixer}' has no attention to show")
    for a in attns:
        a.keep_probs = True
    with torch.no_grad(), ctx:
        model(x[:, -model.config.block_size:])
    maps = [a.probs[0].float().cpu() for a in attns]  # per layer (nh, T, T)
    labels = [tok.decode([i]) for i in start_ids[-model.config.block_size:]]
    plt = pyplot()
    if plt is None:
        shades = ' .:-=+*#%@'
        print(f"matplotlib is not installed: ASCII maps instead (rows attend to columns; '{shades[-1]}' = 1)")
        for layer, m in enumerate(maps):
            for head in range(m.size(0)):
                print(f"layer {layer} head {head}")
                for row, label in zip(m[head], labels):
                    print(f"  {label!r:>6} " + ''.join(shades[min(9, int(p * 10))] for p in row.tolist()))
        return
    n_layer, n_head = len(maps), maps[0].size(0)
    fig, axes = plt.subplots(n_layer, n_head, figsize=(2.5 * n_head, 2.5 * n_layer), squeeze=False)
    for layer, m in enumerate(maps):
        for head in range(n_head):
            ax = axes[layer][head]
            ax.imshow(m[head], cmap='viridis', vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"attention maps of {len(labels)} prompt tokens, {n_layer} layers x {n_head} heads -> {path}")


if attention:
    attention_maps(attention)
    sys.exit(0)

stream = num_samples == 1 and not show_probs
done = torch.zeros(num_samples, dtype=torch.bool, device=device)  # which samples reached <|endoftext|>
streamed_ids, streamed_text = [], ''


def on_token(next_ids, probs):
    """Called with every new token (B, 1): show the candidates, stream, and stop once every sample has ended."""
    global streamed_text
    if show_probs:
        p, ids = probs[0].float().topk(5)
        cands = ' | '.join(f"{show(i)} {q:.3f}" for q, i in zip(p.tolist(), ids.tolist()))
        print(f"{show(next_ids[0, 0].item()):>10} <- {cands}")
    if stop_at_eot:
        done.logical_or_(next_ids[:, 0] == tok.eot)
    if stream and not done[0]:
        streamed_ids.append(next_ids[0, 0].item())
        text = tok.decode(streamed_ids)
        if not text.endswith('\ufffd'):  # wait for the rest of a multi-byte character
            print(text[len(streamed_text):], end='', flush=True)
            streamed_text = text
    return stop_at_eot and bool(done.all())


generator = torch.Generator(device=device).manual_seed(seed)
if stream:
    print(f"---------- sample 1/1 ----------\n{start}", end='', flush=True)
with torch.no_grad(), ctx:
    y = model.generate(x.expand(num_samples, -1), max_new_tokens, temperature=temperature, top_k=top_k or None,
                       top_p=top_p if top_p < 1 else None, kv_cache=kv_cache, on_token=on_token,
                       generator=generator, compile=compile, cache_dtype=getattr(torch, dtype))
if stream:
    print()
else:
    for k in range(num_samples):
        ids = y[k].tolist()
        if stop_at_eot and tok.eot in ids[len(start_ids):]:
            ids = ids[:ids.index(tok.eot, len(start_ids))]
        print(f"---------- sample {k + 1}/{num_samples} ----------")
        print(tok.decode(ids))
print("----------")
