"""
Watch the data flow through the real model: `python train.py --trace` runs one forward and backward pass of a tiny
batch and prints a line per stage (its tensor's shape and what it does), then the gradient norms per parameter
group. A teaching tool: the model is model.py's, watched by hooks, not a copy of it.
"""
import math

import torch
import torch.nn as nn

from model import (ATTENTION, MLP, CausalMean, CausalSelfAttention, LayerNorm, RMSNorm, RotaryTable, Sinusoidal, SwiGLU,
                   WaveNetPair, WindowMLP, manual_attention)
from parallel import full_tensor


def trace_model(model, idx, targets):
    """One forward and backward pass of idx (B, T) through the real model, watched by hooks: a line per stage (its
    tensor's shape and what it does), then gradient norms per parameter group. Returns the lines (train.py --trace).
    Attention runs through manual_attention for the pass, so that its scores and probabilities can be shown."""
    B, T = idx.shape
    lines, hooks = [f"{'ids':<22} {str((B, T)):<18} token ids: {B} sequences of {T}"], []
    what = {
        LayerNorm: 'LayerNorm: mean 0, variance 1 per vector, then a learned gain',
        RMSNorm: 'RMSNorm: divided by the root mean square, then a learned gain',
        CausalMean: 'the mean of positions 0..t: a bag of words',
        WindowMLP: 'the last positions side by side, projected',
        WaveNetPair: 'fused with the position 2**layer earlier',
        MLP: 'feed-forward: per position, up, nonlinearity, down',
        SwiGLU: 'feed-forward: silu(x W1) * (x W3), then W2',
    }

    def show(label, note=None):
        def hook(module, inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(module, CausalSelfAttention):
                probs = module.probs  # (B, nh, T, T)
                lines.append(f"{label + ' scores':<22} {str(tuple(probs.shape)):<18} q k^T / sqrt({module.head_dim}): "
                             f"how much each position attends to each other one")
                lines.append(f"{label + ' mask':<22} {str((T, T)):<18} causal: position t sees 0..t "
                             f"({T * (T + 1) // 2} of {T * T} pairs), the rest -inf")
                lines.append(f"{label + ' softmax':<22} {str(tuple(probs.shape)):<18} each row sums to 1; "
                             f"the output: these weights times v, heads side by side")
            shape = tuple(out.shape) if torch.is_tensor(out) else '-'
            lines.append(f"{label:<22} {str(shape):<18} {note or what.get(type(module), type(module).__name__)}")
        return hook

    def show_qkv(attn, label):
        def hook(module, inputs, output):
            for name, heads in (('q', attn.n_head), ('k', attn.n_kv_head), ('v', attn.n_kv_head)):
                lines.append(f"{label + ' ' + name:<22} {str((B, heads, T, attn.head_dim)):<18} "
                             f"{heads} heads of {attn.head_dim}" + (', rotated by position (RoPE)' if name != 'v' and
                                                                  isinstance(model.rope_at, RotaryTable) else ''))
        return hook

    tied = ' (tied: also the output layer)' if model.wte.weight is model.lm_head.weight else ''
    watch = [(model.wte, 'wte', 'token embedding: a learned vector per token id' + tied)]
    if isinstance(model.wpe, nn.Embedding):
        watch.append((model.wpe, 'wpe', 'position embedding: a learned vector per position, added to wte'))
    elif isinstance(model.wpe, Sinusoidal):
        watch.append((model.wpe, 'wpe', 'position embedding: fixed sin/cos vectors per position, added to wte'))
    for i, block in enumerate(model.blocks):
        for name in ('norm_1', 'mixer', 'norm_2', 'ffn'):
            module = getattr(block, name)
            if module is not None and not isinstance(module, nn.Identity):
                label = 'attn' if isinstance(module, CausalSelfAttention) else name
                note = 'attention output, projected back (c_proj)' if label == 'attn' else None
                watch.append((module, f"block {i} {label}", note))
        if isinstance(block.mixer, CausalSelfAttention):
            hooks.append(block.mixer.c_attn.register_forward_hook(show_qkv(block.mixer, f"block {i} attn")))
    watch += [(model.ln_f, 'ln_f', None), (model.lm_head, 'lm_head', 'logits: a score for every token of the vocab')]
    hooks += [m.register_forward_hook(show(label, note)) for m, label, note in watch if not isinstance(m, nn.Identity)]
    attns = [m for m in model.mixers() if isinstance(m, CausalSelfAttention)]
    for a in attns:
        a.attend, a.keep_probs = manual_attention, True
    try:
        model.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        lines.append(f"{'loss':<22} {'()':<18} cross-entropy {loss.item():.4f} nats (a uniform guess: ln "
                     f"{model.config.vocab_size} = {math.log(model.config.vocab_size):.4f})")
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
        for a in attns:
            a.attend, a.keep_probs, a.probs = ATTENTION[model.config.attn_impl], False, None
    lines.append(f"{'gradients':<22} {'params':>10} {'|grad|':>10} {'|weight|':>10} {'|grad|/|weight|':>16}")
    sublayer = lambda name: '.'.join(name.split('.')[:3 if name.startswith('blocks.') else 1])  # noqa: E731
    for key, (n, g, w) in param_norms(model, sublayer).items():
        lines.append(f"{key:<22} {n:>10,} {g:>10.4f} {w:>10.4f} {g / max(w, 1e-12):>16.2e}")
    model.zero_grad(set_to_none=True)
    return lines


def param_norms(model, group):
    """{group: (parameters, gradient norm, weight norm)}, group(name) naming the group of each of
    model.named_parameters() (tied weights count once), in the order they come; one host-device sync. Under FSDP2
    the shards are gathered: a collective, every process calls it."""
    groups = {}
    for name, p in model.named_parameters():
        groups.setdefault(group(name), []).append(p)
    zero = torch.zeros((), device=next(model.parameters()).device)
    norms = torch.stack([torch.stack([
        torch.stack([full_tensor(p.grad).float().norm() for p in ps if p.grad is not None] or [zero]).norm(),
        torch.stack([full_tensor(p.detach()).float().norm() for p in ps]).norm()]) for ps in groups.values()]).tolist()
    return {key: (sum(p.numel() for p in ps), g, w) for (key, ps), (g, w) in zip(groups.items(), norms)}
