"""
mini-GPT model: one file, every variant behind a GPTConfig flag.

The default GPTConfig is the GPT-2 model (Radford et al. 2019): learned positions, pre-LayerNorm
blocks, GELU MLP, tied embeddings, causal self-attention through scaled_dot_product_attention.
Each flag is resolved once in __init__ (small dicts of component classes), so forward never asks a flag.
What forward does branch on is the kind of call, not the model: a plain forward or a cached generation step
(Positions.input_pos is None or not), and whether attention keeps its probabilities for plots (sample.py).
The ladder configs in config/ladder/ walk from a bigram model to a LLaMA-style transformer one flag at a time
(the README's ladder table lists the rungs).
"""
import math
from dataclasses import dataclass, fields
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

CHOICES = {
    'mixer': ('attn', 'mean', 'none', 'window', 'wavenet'),
    'attn_impl': ('sdpa', 'manual'),
    'ffn': ('none', 'relu', 'gelu', 'gelu_tanh', 'relu2', 'swiglu', 'tanh'),
    'norm': ('none', 'layernorm', 'rmsnorm'),
    'norm_pos': ('pre', 'post'),
    'pos_emb': ('none', 'learned', 'sinusoidal', 'rope'),
    'init': ('gpt2', 'default'),
}


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12  # blocks
    n_head: int = 12  # attention heads (query heads) per block
    n_embd: int = 768  # the width of the residual stream
    dropout: float = 0.0  # dropout on embeddings, attention and sublayer outputs while training
    bias: bool = True  # bias in Linear and LayerNorm layers, like GPT-2
    n_kv_head: Optional[int] = None  # key/value heads: None = n_head (MHA), 1 = MQA, in between = GQA
    mixer: str = 'attn'  # how a position sees earlier ones: attn | mean | none | window | wavenet
    window: int = 3  # mixer='window': how many positions (the current one included) it concatenates
    attn_impl: str = 'sdpa'  # sdpa (flash / fused kernels) | manual (explicit softmax, can keep the probabilities)
    attn_proj: bool = True  # output projection after attention
    ffn: str = 'gelu'  # none | relu | gelu | gelu_tanh | relu2 | swiglu | tanh
    ffn_mult: float = 4.0  # hidden = ffn_mult * n_embd (swiglu: 2/3 of that, to keep the parameter count)
    norm: str = 'layernorm'  # none | layernorm | rmsnorm
    norm_pos: str = 'pre'  # pre (GPT-2, LLaMA) | post (the original transformer)
    residual: bool = True  # residual connections around each sublayer
    pos_emb: str = 'learned'  # none | learned | sinusoidal | rope
    rope_theta: float = 10000.0  # RoPE's base: the slowest rotation's period, in positions (x 2 pi)
    tie_weights: bool = True  # share the token embedding with the output layer
    init: str = 'gpt2'  # gpt2: N(0, 0.02), residual projections / sqrt(2 n_layer) | default: PyTorch's own
    qk_norm: bool = False  # RMS-normalise queries and keys before the dot product

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ('block_size', 'vocab_size', 'n_head', 'n_embd', 'window'):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.n_layer < 0:
            raise ValueError(f"GPTConfig: n_layer must be >= 0, got {self.n_layer}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if not 1 <= self.n_kv_head <= self.n_head or self.n_head % self.n_kv_head:
            raise ValueError(f"GPTConfig: n_kv_head={self.n_kv_head} must divide n_head={self.n_head}")
        if self.pos_emb == 'rope' and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"GPTConfig: rope needs an even head size, got {self.n_embd // self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.ffn_mult <= 0:
            raise ValueError(f"GPTConfig: ffn_mult must be > 0, got {self.ffn_mult}")


def model_config(settings, dataset_vocab_size, dataset='the dataset'):
    """The GPTConfig fields (a dict, as checkpoints keep them) that train.py and bench.py build from their settings:
    every GPTConfig field among the settings, vocab_size None taking the dataset's. A ValueError says what is wrong."""
    args = {f.name: settings[f.name] for f in fields(GPTConfig) if f.name in settings}
    if args.get('vocab_size') is None:
        args['vocab_size'] = dataset_vocab_size
    elif args['vocab_size'] < dataset_vocab_size:
        raise ValueError(f"vocab_size={args['vocab_size']} is smaller than the {dataset_vocab_size} tokens of "
                         f"{dataset}")
    GPTConfig(**args)  # checks every field before anything is allocated
    return args


# ----------------------------------------------------------------------------- normalisation
class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (Ba et al. 2016)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RMSNorm(nn.Module):
    """Scale by the root mean square, no centring, no bias (Zhang & Sennrich 2019; LLaMA)."""

    def __init__(self, ndim, bias=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))

    def forward(self, x):
        return F.rms_norm(x, self.weight.shape, self.weight, 1e-5)


NORMS = {'none': lambda ndim, bias: nn.Identity(), 'layernorm': LayerNorm, 'rmsnorm': RMSNorm}


# ----------------------------------------------------------------------------- positions
def sinusoidal_table(block_size, n_embd):
    """Fixed sin/cos position vectors of 'Attention Is All You Need' (Vaswani et al. 2017)."""
    pos = torch.arange(block_size, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: n_embd // 2])
    return table


class Sinusoidal(nn.Module):
    def __init__(self, block_size, n_embd):
        super().__init__()
        self.register_buffer('table', sinusoidal_table(block_size, n_embd), persistent=False)

    def forward(self, pos):
        return self.table[pos]


class NoPositions(nn.Module):
    """Adds nothing: no positions at all, or RoPE, which rotates queries and keys inside attention."""

    def forward(self, pos):
        return 0


def rope_cache(block_size, head_dim, theta):
    """cos and sin of position * frequency for rotary embeddings (Su et al. 2021), each (block_size, head_dim/2)."""
    freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freq)
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x, rope):
    """Rotate each pair (x[2i], x[2i+1]) of x (B, nh, T, hs) by the angle of its position."""
    cos, sin = rope  # (T, hs/2)
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # even and odd features, (B, nh, T, hs/2)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def no_rope(x, rope):
    return x


class RotaryTable(nn.Module):
    """The (cos, sin) of each position's rotation angles, (T, hs/2) each, that apply_rope uses."""

    def __init__(self, block_size, head_dim, theta):
        super().__init__()
        cos, sin = rope_cache(block_size, head_dim, theta)
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)

    def forward(self, positions):
        return self.cos[positions], self.sin[positions]


class NoRotation(nn.Module):
    def forward(self, positions):
        return None


class Positions(NamedTuple):
    """What every block is told about where its tokens sit (the same for all blocks of one forward)."""
    rope: Optional[tuple]  # (cos, sin) of each token's position, (T, hs/2) each; None unless pos_emb='rope'
    input_pos: Optional[torch.Tensor] = None  # (T,) cache slots the tokens are written to; None without a KV cache
    mask: Optional[torch.Tensor] = None  # (T, cache_len) bool, which cache slots each token may see


# ----------------------------------------------------------------------------- mixers: (B, T, C) -> (B, T, C)
def repeat_kv(x, n_rep):
    """(B, n_kv_head, T, hs) -> (B, n_kv_head * n_rep, T, hs): each key/value head serves n_rep query heads."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def sdpa_attention(q, k, v, dropout_p, mask):
    # mask None: plain causal (lets PyTorch pick the flash kernel); else a (Tq, Tk) bool mask over the KV cache
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True), None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None


def manual_attention(q, k, v, dropout_p, mask):
    """softmax(q k^T / sqrt(hs)) v with a causal mask, spelled out; also returns the probabilities."""
    if mask is None:
        mask = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, Tq, Tk)
    probs = F.softmax(att.masked_fill(~mask, float('-inf')), dim=-1)
    return F.dropout(probs, dropout_p) @ v, probs


ATTENTION = {'sdpa': sdpa_attention, 'manual': manual_attention}


class KVCache(nn.Module):
    """Keys and values of every position generated so far, preallocated for max_len positions (as gpt-fast)."""

    def __init__(self, batch_size, n_kv_head, max_len, head_dim, dtype, device):
        super().__init__()
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.register_buffer('k', torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer('v', torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos, k, v):
        """Write k, v (B, n_kv, T, hs) at slots input_pos; return the whole cache."""
        self.k[:, :, input_pos] = k
        self.v[:, :, input_pos] = v
        return self.k, self.v


class CausalSelfAttention(nn.Module):
    """One class for MHA (n_kv_head = n_head), GQA and MQA (n_kv_head = 1), as in llama2.c."""

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        kv_dim = self.n_kv_head * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)  # q, k, v in one matmul
        self.split = (config.n_embd, kv_dim, kv_dim)
        # query/key normalisation (Dehghani et al. 2023, "ViT-22B"): keeps attention logits bounded
        self.q_norm = RMSNorm(self.head_dim) if config.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if config.qk_norm else nn.Identity()
        self.rotate = apply_rope if config.pos_emb == 'rope' else no_rope
        self.attend = ATTENTION[config.attn_impl]
        # output projection back into the residual stream (Vaswani et al. 2017; the ladder's rung 09)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias) if config.attn_proj else nn.Identity()
        self.c_proj.is_residual_proj = True
        self.dropout = config.dropout
        self.keep_probs, self.probs = False, None  # manual attention can keep its last probabilities (B, nh, T, T)
        self.cache = None  # a KVCache while generating with GPT.setup_cache

    def new_cache(self, batch_size, max_len, dtype, device):
        return KVCache(batch_size, self.n_kv_head, max_len, self.head_dim, dtype, device)

    def forward(self, x, pos):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.split, dim=2)
        q = self.q_norm(q.view(B, T, self.n_head, self.head_dim)).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_norm(k.view(B, T, self.n_kv_head, self.head_dim)).transpose(1, 2)  # (B, n_kv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = self.rotate(q, pos.rope), self.rotate(k, pos.rope)
        if pos.input_pos is not None:  # decoding: add this step's keys and values to the cache, attend to all of it
            k, v = self.cache.update(pos.input_pos, k, v)
        n_rep = self.n_head // self.n_kv_head
        y, probs = self.attend(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), self.dropout if self.training else 0.0,
                               pos.mask)
        if self.keep_probs:  # for plots of the attention maps (attn_impl='manual' only)
            self.probs = probs.detach()
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.c_proj(y)


class InputCache(nn.Module):
    """The inputs of a mixer without keys and values, at every position generated so far (B, max_len, C)."""

    def __init__(self, batch_size, max_len, n_embd, dtype, device):
        super().__init__()
        self.register_buffer('x', torch.zeros(batch_size, max_len, n_embd, dtype=dtype, device=device),
                             persistent=False)

    def update(self, input_pos, x):
        self.x[:, input_pos] = x
        return self.x


class CausalMixer(nn.Module):
    """A mixer that sees only its inputs, mix(x): (B, T, C) -> (B, T, C), row t from rows <= t (mean, window,
    wavenet). In a cached generation step it keeps the inputs of every position so far and recomputes the rows of
    the new positions from them: it has no keys and values to keep, but the layers below it are not run again."""

    def __init__(self, config):
        super().__init__()
        self.n_embd = config.n_embd
        self.cache = None  # an InputCache while generating with GPT.setup_cache

    def new_cache(self, batch_size, max_len, dtype, device):
        return InputCache(batch_size, max_len, self.n_embd, dtype, device)

    def forward(self, x, pos):
        if pos.input_pos is None:
            return self.mix(x)
        return self.mix(self.cache.update(pos.input_pos, x))[:, pos.input_pos]  # all positions so far -> the new rows


class CausalMean(CausalMixer):
    """Each position becomes the average of itself and all earlier positions: a bag of words, the simplest way to
    let a position see the past (the ladder's rung 02)."""

    def mix(self, x):
        counts = torch.arange(1, x.size(1) + 1, device=x.device, dtype=x.dtype)[:, None]  # (T, 1)
        return x.cumsum(dim=1) / counts


def shift(x, d):
    """x moved d positions later in time, zeros first: shift(x, d)[:, t] = x[:, t - d]."""
    return F.pad(x, (0, 0, d, 0))[:, : x.size(1)]


class WindowMLP(CausalMixer):
    """Concatenate the last `window` positions and project: the fixed-context MLP language model
    (Bengio et al. 2003; makemore's MLP on names)."""

    def __init__(self, config):
        super().__init__(config)
        self.window = config.window
        self.proj = nn.Linear(config.window * config.n_embd, config.n_embd, bias=config.bias)

    def mix(self, x):
        return self.proj(torch.cat([shift(x, d) for d in reversed(range(self.window))], dim=-1))  # (B, T, k*C) -> C


class WaveNetPair(CausalMixer):
    """Layer i fuses each position with the one 2**i earlier: a causal dilated convolution of width 2
    (van den Oord et al. 2016; makemore's WaveNet on names). n_layer layers see 2**n_layer positions."""

    def __init__(self, config, layer):
        super().__init__(config)
        self.dilation = 2 ** layer
        self.proj = nn.Linear(2 * config.n_embd, config.n_embd, bias=config.bias)

    def mix(self, x):
        return self.proj(torch.cat([shift(x, self.dilation), x], dim=-1))  # (B, T, 2C) -> (B, T, C)


MIXERS = {
    'attn': lambda config, layer: CausalSelfAttention(config),
    'mean': lambda config, layer: CausalMean(config),
    'none': None,  # no mixing at all: with n_layer=0 the model is a bigram table
    'window': lambda config, layer: WindowMLP(config),
    'wavenet': WaveNetPair,
}


# ----------------------------------------------------------------------------- feed-forward: (B, T, C) -> (B, T, C)
class MLP(nn.Module):
    """Two linear layers around a pointwise nonlinearity (Vaswani et al. 2017; GPT-2 uses GELU)."""

    def __init__(self, config, act):
        super().__init__()
        hidden = int(config.ffn_mult * config.n_embd)
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.act = act
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_proj = True

    def forward(self, x, pos):
        return self.c_proj(self.act(self.c_fc(x)))


class SwiGLU(nn.Module):
    """silu(x W1) * (x W3), then W2 (Shazeer 2020; LLaMA). Three matrices, so the hidden size is 2/3 of
    ffn_mult * n_embd: 3 * (2/3 h) * C = 2 h C parameters, the same as a plain MLP of hidden size h."""

    def __init__(self, config):
        super().__init__()
        hidden = round(2 / 3 * config.ffn_mult * config.n_embd)
        self.w1 = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.w3 = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_proj = True

    def forward(self, x, pos):
        return self.c_proj(F.silu(self.w1(x)) * self.w3(x))


FFNS = {
    'none': None,
    'relu': lambda config: MLP(config, nn.ReLU()),
    'gelu': lambda config: MLP(config, nn.GELU()),
    'gelu_tanh': lambda config: MLP(config, nn.GELU(approximate='tanh')),  # GELU's tanh approximation: OpenAI's GPT-2
    'relu2': lambda config: MLP(config, lambda x: F.relu(x).square()),  # squared ReLU (So et al. 2021, "Primer")
    'tanh': lambda config: MLP(config, nn.Tanh()),  # makemore's MLP and WaveNet on names (Bengio et al. 2003)
    'swiglu': SwiGLU,
}


# ----------------------------------------------------------------------------- blocks
def pre_norm_residual(x, f, norm, pos, drop):
    return x + drop(f(norm(x), pos))  # GPT-2, LLaMA


def post_norm_residual(x, f, norm, pos, drop):
    return norm(x + drop(f(x, pos)))  # the original transformer


def pre_norm_plain(x, f, norm, pos, drop):
    return drop(f(norm(x), pos))


def post_norm_plain(x, f, norm, pos, drop):
    return norm(drop(f(x, pos)))


SUBLAYER = {('pre', True): pre_norm_residual, ('post', True): post_norm_residual,
            ('pre', False): pre_norm_plain, ('post', False): post_norm_plain}


class Block(nn.Module):
    """A mixer sublayer, then a feed-forward sublayer, each wrapped by the configured norm and residual rule.
    A sublayer that is 'none' is left out."""

    def __init__(self, config, layer):
        super().__init__()
        mixer, ffn, norm = MIXERS[config.mixer], FFNS[config.ffn], NORMS[config.norm]
        self.norm_1 = norm(config.n_embd, config.bias) if mixer else None
        self.mixer = mixer(config, layer) if mixer else None
        self.norm_2 = norm(config.n_embd, config.bias) if ffn else None
        self.ffn = ffn(config) if ffn else None
        self.sublayers = [(f, n) for f, n in ((self.mixer, self.norm_1), (self.ffn, self.norm_2)) if f is not None]
        self.sublayer = SUBLAYER[(config.norm_pos, config.residual)]
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, pos):
        for f, norm in self.sublayers:
            x = self.sublayer(x, f, norm, pos, self.drop)
        return x


def head_loss(lm_head, x, targets):
    """The output layer and the mean cross-entropy over the targets (-1: left out): logits (B, T, V) and the loss."""
    logits = lm_head(x)
    return logits, F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)
        self.wpe = {'learned': lambda: nn.Embedding(config.block_size, C),
                    'sinusoidal': lambda: Sinusoidal(config.block_size, C)}.get(config.pos_emb, NoPositions)()
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = NORMS[config.norm](C, config.bias)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.head_loss = head_loss  # the output layer and the loss (fp8.use_float8_head swaps in its float8 one)
        if config.tie_weights:
            self.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf 2017)
        # rotary position angles (RoPE, Su et al. 2021), passed down to every attention layer; None for the others
        self.rope_at = RotaryTable(config.block_size, C // config.n_head, config.rope_theta) \
            if config.pos_emb == 'rope' else NoRotation()
        self.cache_shape = None  # (batch size, dtype) of the caches set up for generation
        self.compiled_step = None  # decode_step(compile=True), once made
        self.register_buffer('causal_mask', None, persistent=False)  # (block_size, block_size) while caches are set up
        if config.init == 'gpt2':
            self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer) (Radford et al. 2019, sec. 2.3)
        if isinstance(module, nn.Linear):
            residual = getattr(module, 'is_residual_proj', False) and self.config.n_layer > 0
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if residual else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_checkpoint(cls, checkpoint, **overrides):
        """The model a checkpoint holds (compile / DDP prefixes stripped), int8 layers for an int8 checkpoint
        (export.py --quantize=int8); overrides change GPTConfig fields that leave the weights' shapes alone
        (attn_impl, dropout)."""
        model = cls(GPTConfig(**{**checkpoint['model_args'], **overrides}))
        if checkpoint.get('quantize') == 'int8':
            quantize_int8(model)
        model.load_state_dict(clean_state_dict(checkpoint['model']))
        return model

    def get_num_params(self, non_embedding=True):
        """Parameter count; tied weights count once. non_embedding leaves out the lookup tables: a learned position
        table, and the token table unless it is tied to the output layer (then it is that layer's matrix). That is the
        N of 6N training FLOPs per token (Kaplan et al. 2020): every weight that multiplies, the output layer once."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            tables = [m.weight for m in (self.wte, self.wpe) if isinstance(m, nn.Embedding)]
            n -= sum(w.numel() for w in tables if w is not self.lm_head.weight)
        return n

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> logits (B, T, vocab_size) for every position, and the loss if targets are given."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        x = self.trunk(idx, Positions(self.rope_at(torch.arange(T, device=idx.device))))  # (B, T, C)
        if targets is None:
            return self.lm_head(x), None
        return self.head_loss(self.lm_head, x, targets)

    def trunk(self, idx, pos):
        """Embeddings, blocks and the final norm: (B, T) ids -> (B, T, C)."""
        positions = torch.arange(idx.size(1), device=idx.device) if pos.input_pos is None else pos.input_pos
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x, pos)
        return self.ln_f(x)

    # -------------------------------------------------------------------------- generation with a KV cache
    def mixers(self):
        return [block.mixer for block in self.blocks if block.mixer is not None]

    def setup_cache(self, batch_size, dtype=None):
        """Preallocate a cache of block_size positions in every mixer (gpt-fast's static cache): keys and values in
        attention layers, the inputs in the others."""
        device, dtype = self.wte.weight.device, dtype or self.wte.weight.dtype  # wte: float even in an int8 model
        if self.cache_shape == (batch_size, dtype):
            return  # reuse it: a compiled decode step keeps pointing at the same buffers
        T = self.config.block_size
        for mixer in self.mixers():
            mixer.cache = mixer.new_cache(batch_size, T, dtype, device)
        self.causal_mask = torch.ones(T, T, dtype=torch.bool, device=device).tril()
        self.cache_shape = (batch_size, dtype)

    def clear_cache(self):
        for mixer in self.mixers():
            mixer.cache = None
        self.causal_mask, self.cache_shape = None, None

    def step(self, idx, input_pos):
        """Cached forward of idx (B, T) written at cache slots input_pos (T,): logits of the last position (B, V).
        Prefill passes the whole prompt, decode one token at a time."""
        pos = Positions(self.rope_at(input_pos), input_pos, self.causal_mask[input_pos])
        return self.lm_head(self.trunk(idx, pos)[:, -1])

    def decode_step(self, compile=False):
        """The one-token decode step of generate: self.step, or (compile=True) its torch.compile'd form, made once and
        kept (CUDA graphs, 'reduce-overhead': one replay per token; the caches' buffers stay put, so it stays valid)."""
        if not compile:
            return self.step
        if self.compiled_step is None:
            self.compiled_step = torch.compile(self.step, mode='reduce-overhead', fullgraph=True)
        return self.compiled_step

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, kv_cache=False,
                 on_token=None, generator=None, compile=False, cache_dtype=None):
        """Sample max_new_tokens after idx (B, T).
        kv_cache=False is the plain reference: the whole context through the model for every new token.
        kv_cache=True prefills the context once, then decodes one token at a time from the cache (every mixer has one),
        kept in cache_dtype: the dtype the forward computes in (autocast's: bfloat16, float16), None for the weights'.
        compile=True decodes through the compiled step (decode_step). Both see the same context: up to block_size
        tokens; once that is full, the newest half is kept (and prefilled again). on_token(next (B, 1), probs (B, V))
        sees each new token and may return True to stop early."""
        block_size = self.config.block_size
        start = max(0, idx.size(1) - block_size)  # where the context begins
        cached = 0  # how many tokens of the context are in the KV cache
        if kv_cache:
            self.setup_cache(idx.size(0), cache_dtype)
        decode = self.decode_step(compile)
        for _ in range(max_new_tokens):
            if idx.size(1) - start > block_size:  # the context is full: keep the newest half
                start, cached = idx.size(1) - block_size // 2, 0
            if not kv_cache:
                logits = self(idx[:, start:])[0][:, -1]
            elif cached == 0:  # prefill: the whole context at once
                cached = idx.size(1) - start
                logits = self.step(idx[:, start:], torch.arange(cached, device=idx.device))
                input_pos = torch.tensor([cached], device=idx.device)  # the next cache slot, kept on the device
            else:  # decode: only the newest token, at the next cache slot (same shapes every step: compiles once)
                logits = decode(idx_next, input_pos)  # the token sampled last, (B, 1)
                input_pos += 1  # on the device: no host-device sync between steps
                cached += 1
            idx_next, probs = sample_logits(logits, temperature, top_k, top_p, generator)
            idx = torch.cat((idx, idx_next), dim=1)
            if on_token is not None and on_token(idx_next, probs):
                break  # the caller has what it wants (every sample reached <|endoftext|>, say)
        return idx

    def flops_per_token(self):
        """Training FLOPs per token of a block_size sequence (PaLM, Chowdhery et al. 2022, appendix B): 6N, N =
        get_num_params() (2 per weight forward, 4 backward: the output layer once, embedding lookups never), plus
        each attention layer's scores and weighted sum of values: 2 x 2 x n_embd x block_size forward, x3 in all."""
        n_attn = sum(isinstance(mixer, CausalSelfAttention) for mixer in self.mixers())
        return 6 * self.get_num_params() + 12 * n_attn * self.config.n_embd * self.config.block_size

    def estimate_mfu(self, tokens_per_sec, peak):
        """Model FLOPs utilisation: the training FLOP/s of tokens_per_sec tokens a second on ONE device (under DDP,
        the total divided by the number of processes), as a fraction of that device's peak; None if it is unknown."""
        return None if not peak else self.flops_per_token() * tokens_per_sec / peak


# ----------------------------------------------------------------------------- sampling, evaluation, loading
def sample_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Next tokens (B, 1) from last-position logits (B, V), and the distribution they were drawn from.
    temperature 0 is greedy; top_k keeps the k likeliest tokens; top_p keeps the smallest set of likeliest
    tokens whose probabilities add up to at least p (nucleus sampling, Holtzman et al. 2019)."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True), F.softmax(logits, dim=-1)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], float('-inf'))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True)
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the mass before this token already reaches p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float('-inf'))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator), probs


def eval_sums(logits, targets, token_bytes):
    """Sums over one batch, python floats: (nats, correct next tokens, tokens, nats of the tokens that have text,
    their UTF-8 bytes). Over an eval: loss = nats / tokens (per token), accuracy = correct / tokens, and bits per
    byte = text nats / ln 2 / bytes, on which char and BPE models compare; tokens without text (token_bytes 0, as
    <|endoftext|>) are left out of it, as nanochat's evaluation does. logits (B, T, V), targets (B, T)."""
    nats = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction='none')  # (B*T,)
    nbytes = token_bytes[targets.flatten()]
    sums = torch.stack([nats.sum(), (logits.argmax(-1) == targets).sum(), (nats * (nbytes > 0)).sum(), nbytes.sum()])
    nats_sum, correct, text_nats, text_bytes = sums.tolist()
    return nats_sum, correct, targets.numel(), text_nats, text_bytes


def clean_state_dict(state_dict):
    """Strip the prefixes torch.compile ('_orig_mod.') and DDP ('module.') add, so any checkpoint loads anywhere."""
    clean = {}
    for k, v in state_dict.items():
        while k.startswith(('_orig_mod.', 'module.')):
            k = k.split('.', 1)[1]
        clean[k] = v
    return clean


# ----------------------------------------------------------------------------- int8 weights
class Int8Linear(nn.Module):
    """A Linear layer whose weight is held as int8 with one float scale per output channel, w ~ q * scale (symmetric,
    scale = max |w| of the row / 127), dequantized on the fly: weight-only int8 as in gpt-fast's WeightOnlyInt8Linear.
    x @ (q * scale)^T = (x @ q^T) * scale, so the scale multiplies the output (B, T, out), not the whole matrix."""

    def __init__(self, linear):
        super().__init__()
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,)
        self.register_buffer('weight', (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer('scale', scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(w.size(0), device=w.device)
        self.register_buffer('bias', bias)  # zeros for a layer without bias: one forward for both

    def forward(self, x):
        y = F.linear(x, self.weight.to(matmul_dtype(x)))  # under autocast: int8 -> bf16 / fp16 directly
        # the scale in float32: in bf16, torch.compile (2.11, CUDA) swaps the layer for _weight_int8pack_mm, which
        # failed to compile with the scale cast in the graph and, with a bf16 scale, sampled 1.8-2.5x slower
        return (y.float() * self.scale + self.bias).to(y.dtype)


def matmul_dtype(x):
    """The dtype a matmul of x runs in: autocast's (bf16 / fp16) while it is on, else x's own."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


@torch.no_grad()
def quantize_int8(model):
    """Swap every nn.Linear of the model for an Int8Linear of its weights, in place, except an output layer tied to
    the token embedding: it stays float, as the embeddings do (a lookup table is not a matmul). Returns the model."""
    keep = model.lm_head if model.lm_head.weight is model.wte.weight else None
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear) and child is not keep:
                setattr(module, name, Int8Linear(child))
    return model
