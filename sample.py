"""
Sample from a trained mini-GPT.

    python sample.py --start "ROMEO:" --num_samples=3 --max_new_tokens=300   # out/best.pt: python train.py's model
    python sample.py --start FILE:prompt.txt --temperature=0.8 --top_p=0.9 --out_dir=out
    python sample.py --start "One day" --stop_at_eot      # a TinyStories model: one story each
    python sample.py --start "ROMEO:" --show_probs --max_new_tokens=20   # the top-5 candidates at every step
    python sample.py --start "ROMEO:" --attention=attn.png               # attention maps of the prompt
    python sample.py --init_from=gpt2 --start "Hello, I'm a language model,"   # OpenAI's GPT-2 (needs transformers)
    python sample.py --init_from=PATH --temperature=0     # a Hugging Face folder (GPT-2 or Llama), offline
    python sample.py --start "ROMEO:" --quantize=int8     # weight-only int8 linear layers

It samples from out_dir's best.pt (--ckpt=last: last.pt), out/ unless --out_dir names another (a config's own out_dir,
out-ladder/08_residual, ...), and says which on stderr, with its iteration and best val loss. Samples are generated
together in one batch with a key/value cache (--kv_cache=False runs the plain reference path). A single sample streams
to the terminal as it is produced; several show a progress bar on a terminal.
"""
import math
import sys
import textwrap

import torch
from tqdm import tqdm

import hf
from common import device_setup, find_checkpoint, load_checkpoint, or_exit, pyplot
from configurator import configure
from data.common import Tokenizer, read_text
from model import GPT, quantize_int8

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume': a checkpoint of train.py (out_dir, ckpt); or pretrained weights: a GPT-2 name
# (gpt2, gpt2-medium, gpt2-large, gpt2-xl; needs transformers) or a Hugging Face folder, GPT-2 or Llama (hf.py)
out_dir = 'out'  # where train.py wrote its checkpoints: out/ is a plain `python train.py`'s; configs name their own
ckpt = 'best'  # 'best' (out_dir's lowest val loss), 'last', or a path to a .pt file (then out_dir is not used)
quantize = ''  # 'int8': weight-only int8 linear layers, one scale per output channel (model.quantize_int8)
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3  # samples, generated together in one batch
max_new_tokens = 500  # tokens generated after the prompt, per sample
temperature = 0.8  # 1.0 = the model's distribution, lower = more conservative, 0 = greedy
top_k = 200  # keep only the k most likely tokens; 0 = no limit
top_p = 1.0  # keep the smallest set of likeliest tokens whose probabilities reach top_p (nucleus); 1.0 = all
stop_at_eot = False  # end each sample at its first <|endoftext|> (gpt2 and cl100k_base tokenizers)
kv_cache = True  # prefill the prompt once, then decode one token at a time; False = the plain reference path
show_probs = False  # print the top-5 candidates and their probabilities for every generated token (first sample)
attention = ''  # save the prompt's attention maps per layer and head to this .png (ASCII when matplotlib is missing)
seed = 1337  # the same seed, prompt and settings give the same samples
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


if init_from == 'resume':
    source = or_exit(find_checkpoint, out_dir, ckpt)  # what the user is told: which checkpoint this is
    checkpoint = or_exit(load_checkpoint, source)
else:  # pretrained weights, through transformers
    source = f"{init_from} (Hugging Face weights)"
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


def visible(text):
    """A token's text for a plot's axis, its white space shown: '␣' a space, '⏎' a newline, '⇥' a tab, other control
    characters escaped as repr does."""
    text = text.replace(' ', '␣').replace('\n', '⏎').replace('\t', '⇥')
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def attention_figure(plt, maps, labels, title):
    """One heat map per layer (rows of the figure) and head (columns), the prompt's tokens on both axes: row = the
    query token, column = the token it attends to; later tokens, which it cannot see, are left blank. A colorbar for
    all of them; the figure grows with the number of tokens so that every label has room."""
    n_layer, n_head, T = len(maps), maps[0].size(0), len(labels)
    side = max(1.5, 0.16 * T) + 1.0  # inches a map: 0.16 a token's label (7 pt), 1 for its labels and title
    width, height = max(6.0, n_head * side + 1.2), n_layer * side + 1.0  # + the colorbar, + the figure's title
    fig, axes = plt.subplots(n_layer, n_head, figsize=(width, height), squeeze=False, layout='constrained')
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for layer, m in enumerate(maps):
        for head in range(n_head):
            ax = axes[layer][head]
            image = ax.imshow(m[head].masked_fill(future, float('nan')).numpy(), cmap='viridis', vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ax.set_xticks(range(T), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(T), labels, fontsize=7)
            if layer == n_layer - 1:
                ax.set_xlabel("attends to (key token)", fontsize=7)
            if head == 0:
                ax.set_ylabel("query token", fontsize=7)
    fig.colorbar(image, ax=axes, label="attention probability", shrink=0.6)
    wrap = int(width * 72 / (10 * 0.65))  # characters a line: ~0.65 em a character at 10 pt
    fig.suptitle(textwrap.fill(title, wrap, break_on_hyphens=False), fontsize=10)
    return fig


def attention_maps(path):
    """Run the prompt (its last 48 tokens at most) once through the manual attention path; plot each layer's heads
    (ASCII without matplotlib)."""
    attns = [b.mixer for b in model.blocks if hasattr(b.mixer, 'keep_probs')]
    if not attns:
        sys.exit(f"error: mixer='{model.config.mixer}' has no attention to show")
    seen = min(len(start_ids), model.config.block_size)  # the note above tells of a prompt cut to block_size
    T = min(seen, 48)  # more tokens than this would not leave their labels room
    if T < seen:
        print(f"note: the attention maps show the prompt's last {T} tokens of {len(start_ids)}", file=sys.stderr)
    for a in attns:
        a.keep_probs = True
    with torch.no_grad(), ctx:
        model(x[:, -T:])
    maps = [a.probs[0].float().cpu() for a in attns]  # per layer (nh, T, T)
    labels = [tok.decode([i]) for i in start_ids[-T:]]
    title = f"attention of {source} on {T} prompt tokens: row = query token, column = the token it attends to"
    plt = pyplot()
    if plt is None:
        shades = ' .:-=+*#%@'
        print(f"{title} (column j is row j's token)")
        print(f"matplotlib is not installed: ASCII maps instead ('{shades[0]}' = 0 ... '{shades[-1]}' = 1)")
        for layer, m in enumerate(maps):
            for head in range(m.size(0)):
                print(f"layer {layer} head {head}")
                for row, label in zip(m[head], labels):
                    print(f"  {label!r:>6} " + ''.join(shades[min(9, int(p * 10))] for p in row.tolist()))
        return
    fig = attention_figure(plt, maps, [visible(t) for t in labels], title)
    fig.savefig(path, dpi=min(120, 10000 / max(fig.get_size_inches())))  # at most 10000 pixels a side
    print(f"attention maps of {T} prompt tokens, {len(maps)} layers x {maps[0].size(0)} heads -> {path}")


facts = [f"iter {checkpoint['iter_num']}"] if 'iter_num' in checkpoint else []  # int8 exports and HF weights: none
if math.isfinite(checkpoint.get('best_val_loss', math.inf)):
    facts.append(f"best val loss {checkpoint['best_val_loss']:.4f}")
if quantize or checkpoint.get('quantize'):
    facts.append("int8 linear layers")
print(f"sampling from {source}" + (f" ({', '.join(facts)})" if facts else ""), file=sys.stderr)
if attention:
    attention_maps(attention)
    sys.exit(0)

stream = num_samples == 1 and not show_probs
done = torch.zeros(num_samples, dtype=torch.bool, device=device)  # which samples reached <|endoftext|>
streamed_ids, streamed_text = [], ''
# a bar over the new tokens while nothing else is printed; on a terminal only, so that a log gets no '\r' lines
progress = tqdm(total=max_new_tokens, desc=f"{num_samples} samples", unit='tok', dynamic_ncols=True,
                disable=stream or show_probs or not sys.stderr.isatty())


def on_token(next_ids, probs):
    """Called with every new token (B, 1): count it, show the candidates, stream, and stop once every sample has
    ended."""
    global streamed_text
    progress.update(1)
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
if show_probs:
    print(f"{'chosen':>10}    then the 5 likeliest candidates, each with its probability"
          + (f" (sample 1 of {num_samples})" if num_samples > 1 else ""))
with torch.no_grad(), ctx:
    y = model.generate(x.expand(num_samples, -1), max_new_tokens, temperature=temperature, top_k=top_k or None,
                       top_p=top_p if top_p < 1 else None, kv_cache=kv_cache, on_token=on_token,
                       generator=generator, compile=compile, cache_dtype=getattr(torch, dtype))
progress.close()
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
