"""
The optimizers train.py and bench.py build (the optim key), readable and testable without the rest:

- parameter groups: what is decayed and what is not, and which matrices Muon takes (configure_adamw, configure_muon);
- newton_schulz and Muon (Jordan 2024), with AdamW (Loshchilov & Hutter 2019) for the parameters Muon does not take;
- the learning-rate schedule: linear warmup, then cosine decay (lr_at);
- the weight average: an exponential moving average of the weights, which evals measure (EMA).
Under FSDP2 a parameter is a shard (parallel.py): Muon gathers each whole matrix to orthogonalise it.
"""
import contextlib
import inspect
import math

import torch
from torch.optim.adamw import adamw

from parallel import full_tensor, local, shard_like


# ----------------------------------------------------------------------------- parameter groups
def configure_adamw(model, weight_decay, learning_rate, betas, device_type, compile=False, ns=None):
    """torch.optim.AdamW that decays the 2-D weights (matmuls, embeddings), never biases and norm gains; fused into
    one kernel on CUDA. compile, ns: nothing to compile, no Newton-Schulz (configure_muon's signature)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {'params': [p for p in params if p.dim() >= 2], 'weight_decay': weight_decay},
        {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0},
    ]
    fused = device_type == 'cuda' and 'fused' in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({'fused': True} if fused else {}))


def configure_muon(model, weight_decay, learning_rate, betas, device_type, compile=False, ns='jordan'):
    """Muon for the matrices inside the blocks (attention, feed-forward, mixer projections); AdamW, with the groups of
    configure_adamw, for the rest: embeddings, the output layer (decayed), norm gains and biases (not). compile:
    each shape's whole update (muon_update) through torch.compile: the momentum, the cast and the weight update fused
    into a few kernels around Newton-Schulz's matmuls. ns: Newton-Schulz's coefficients, a key of NEWTON_SCHULZ."""
    inside = {id(p) for p in model.blocks.parameters() if p.dim() == 2}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {'params': [p for p in params if id(p) in inside], 'use_muon': True, 'weight_decay': weight_decay},
        {'params': [p for p in params if id(p) not in inside and p.dim() >= 2], 'weight_decay': weight_decay},
        {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0},
    ]
    optimizer = Muon([g for g in groups if g['params']], lr=learning_rate, betas=betas, ns=ns,
                     fused=device_type == 'cuda')
    if compile:  # loop reordering off: with it, inductor of torch 2.11 failed an assertion on these graphs on CUDA
        optimizer.update = torch.compile(muon_update, dynamic=False, options={'loop_ordering_after_fusion': False})
    return optimizer


OPTIMIZERS = {'adamw': configure_adamw, 'muon': configure_muon}  # train.py's optim key


def key_error(optim, muon_ns):
    """What is wrong with train.py's optim and muon_ns keys, in one line (train.py and bench.py exit with it); None."""
    for key, value, allowed in (('optim', optim, OPTIMIZERS), ('muon_ns', muon_ns, NEWTON_SCHULZ)):
        if value not in allowed:
            return f"{key} must be one of {', '.join(allowed)}, got '{value}'"
    return None


# ----------------------------------------------------------------------------- Muon
# Newton-Schulz's variants, each (rescale, coefficients). rescale: how X is brought to singular values <= 1 before the
# first step: 'frobenius', X / ||X||_F (Muon's), or 'aol', then each row scaled too (see aol). coefficients: one
# (a, b, c) per step: X <- aX + b(XX^T)X + c(XX^T)^2 X pushes every singular value of X towards 1.
# tests/test_optim.py checks where each puts singular values from [1e-3, 1].
POLAR_EXPRESS = ((8.156554524902461 / 1.02, -22.48329292557795 / 1.02**3, 15.878769915207462 / 1.02**5),
                 (4.042929935166739, -2.808917465908714, 0.5000178451051316),
                 (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
                 (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
                 (2.3465413258596377, -1.7097828382687081, 0.42323551169305323))
NEWTON_SCHULZ = {
    # Muon's own (Jordan 2024): one quintic 5 times, into ~[0.68, 1.13] from 1e-2 ([0.47, 1.20] from 1e-3)
    'jordan': ('frobenius', ((3.4445, -4.7750, 2.0315),) * 5),
    # "The Polar Express" (Amsel et al. 2025): each step's quintic is the minimax one for where the last step left the
    # singular values, all but the last shrunk 1% for bfloat16's rounding, the first run on X / 1.02 (folded into its
    # coefficients): into [0.85, 1.14] from 1e-3
    'polar_express': ('frobenius', POLAR_EXPRESS),
    # Turbo-Muon (Boissin et al. 2025): AOL's rescaling starts the singular values nearer 1, so Polar Express's last
    # 4 steps do: one step fewer
    'turbo': ('aol', POLAR_EXPRESS[1:]),
}


GRAM_ASPECT = 1.5  # newton_schulz's Gram form by default for matrices at least this many times as wide as tall


def ns_form(rows, cols, device_type, gram=None):
    """How newton_schulz runs a batch of rows x cols matrices (rows <= cols): (gram, dtype). gram None: the Gram form
    where cols >= GRAM_ASPECT rows. dtype: on CUDA bfloat16 (Muon's choice), float16 for the Gram form (its A <- QAQ
    needs float16's 3 more bits of mantissa: Dao AI Lab 2026, "Gram Newton-Schulz"); float32 elsewhere, since a CPU
    without bfloat16 units is ~15x slower in it."""
    gram = cols >= GRAM_ASPECT * rows if gram is None else gram
    return gram, torch.float32 if device_type != 'cuda' else torch.float16 if gram else torch.bfloat16


def aol(X, A, eps=1e-7):
    """Almost-orthogonal-layer rescaling (Prach & Lampert 2022), as Turbo-Muon uses it: row i of X times
    1 / sqrt(sum_j |A_ij|), A = XX^T. The spectral norm is then <= 1, and the singular values sit nearer 1 than
    X / ||X||_F leaves them. Returns the rescaled X and its XX^T, from A (no product of its own)."""
    s = torch.rsqrt(A.abs().sum(dim=-1) + eps)  # (batch, r)
    return X * s.unsqueeze(-1), A * s.unsqueeze(-1) * s.unsqueeze(-2)


def newton_schulz(G, ns=NEWTON_SCHULZ['jordan'], gram=None, dtype=None, eps=1e-7):
    """The nearest semi-orthogonal matrix to G (U V^T of its SVD), roughly: Muon's quintic Newton-Schulz iteration
    (Jordan 2024). Bring every singular value to <= 1 (ns's rescale), then for each (a, b, c) of ns's coefficients
    X <- aX + b(XX^T)X + c(XX^T)^2 X. A tall matrix is transposed first (XX^T is then the small side). G (..., rows,
    cols): a batch of matrices works too. gram, dtype: None is ns_form's choice.
    gram: run the same iteration on the small side. Each step multiplies X by Q = aI + bA + cA^2, a polynomial in
    A = XX^T, so A <- QAQ and X_5 = Q_4...Q_0 X_0 need r x r products only (r = the short side) and an r x c product at
    each end: for 768 x 3072, 36% fewer FLOPs, the same result to ~1e-5 in float32. In float16, A <- QAQ drifts from
    the XX^T of the X it stands for, so after 2 steps the iteration restarts from X_2 = Q_1 Q_0 X_0 and its own XX^T
    (Dao AI Lab 2026, "Gram Newton-Schulz")."""
    rescale, coefficients = ns
    X = G.reshape(-1, *G.shape[-2:])  # (batch, rows, cols)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    gram, form_dtype = ns_form(*X.shape[-2:], G.device.type, gram)
    dtype = dtype or form_dtype
    X = X.float()
    X = (X / (X.norm(dim=(-2, -1), keepdim=True) + eps)).to(dtype)  # scaled in float32 first: float16's range is short
    A = X @ X.mT  # (batch, r, r): the first step's, and AOL's
    if rescale == 'aol':
        X, A = aol(X, A, eps)
    if not gram:
        for k, (a, b, c) in enumerate(coefficients):
            if k:
                A = X @ X.mT
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b A + c A A in one call (~30% faster on a CPU than apart)
            X = torch.baddbmm(X, B, X, beta=a)  # a X + B X
    else:
        restart = 2 if dtype == torch.float16 else len(coefficients)
        M = None
        for k, (a, b, c) in enumerate(coefficients):
            if k == restart:  # X_k = M X_0 and its XX^T afresh
                X, M = M @ X, None
                A = X @ X.mT
            Q = torch.baddbmm(A, A, A, beta=b, alpha=c)
            Q.diagonal(dim1=-2, dim2=-1).add_(a)  # Q = aI + bA + cA^2
            M = Q if M is None else Q @ M  # Q_k ... Q_0 (since the restart)
            if k + 1 < len(coefficients) and k + 1 != restart:
                A = Q @ A @ Q  # the next XX^T
        X = M @ X
    if tall:
        X = X.mT
    return X.reshape(G.shape).to(G.dtype)


def by_shape(params):
    """Muon's batches: the matrices of one shape, tall ones with the wide ones of their transposed shape, are
    orthogonalised in one batched call. {(short side, long side): [matrices]}"""
    batches = {}
    for p in params:
        batches.setdefault(tuple(sorted(p.shape)), []).append(p)
    return batches


def muon_update(params, grads, bufs, lr, weight_decay, momentum, nesterov, ns):
    """Muon's step for matrices of one shape (tall and wide alike; see Muon): momentum, orthogonalise, apply.
    lr, weight_decay: numbers, or 0-d tensors (compiled: their values change without a new graph)."""
    torch._foreach_mul_(bufs, momentum)  # foreach: one kernel for all the matrices, not one each
    torch._foreach_add_(bufs, grads)
    updates = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    wide = [p.size(0) <= p.size(1) for p in params]
    whole = [full_tensor(u) if w else full_tensor(u).mT for u, w in zip(updates, wide)]  # (short, long) each
    O = newton_schulz(torch.stack(whole), NEWTON_SCHULZ[ns])
    O = [shard_like(o if w else o.mT, p) for o, w, p in zip(O.unbind(0), wide, params)]  # (n, short, long) -> each
    torch._foreach_mul_(params, 1 - lr * weight_decay)
    step = -0.2 * math.sqrt(max(params[0].shape)) * lr
    if torch.is_tensor(step):  # alpha must be a number
        torch._foreach_add_(params, torch._foreach_mul(O, step))
    else:
        torch._foreach_add_(params, O, alpha=step)


class Muon(torch.optim.Optimizer):
    """Muon (Jordan 2024, "Muon: An optimizer for hidden layers in neural networks") for the groups with use_muon=True,
    AdamW for the others, in one optimizer: one state_dict for checkpoints, and every group's lr set by the schedule.

    use_muon=True (2-D matrices): m <- momentum m + g, the update u = g + momentum m (Nesterov) or m, orthogonalised,
    O = newton_schulz(u), then p <- p (1 - lr wd) - lr 0.2 sqrt(max(rows, cols)) O. O has singular values ~1, so its
    RMS is ~1/sqrt(max(rows, cols)); the factor gives the update the RMS of a typical AdamW update, 0.2 (Liu et al.
    2025, "Muon is Scalable for LLM Training"), so that AdamW's learning_rate and weight_decay apply unchanged.
    use_muon=False: AdamW (Loshchilov & Hutter 2019) with betas, eps, weight_decay, as torch.optim.AdamW computes it.
    Under DDP each process orthogonalises the same all-reduced gradient: nothing to add. Under FSDP2 a process holds
    only a shard of each matrix (a DTensor), and orthogonalising a shard is not orthogonalising the matrix: every
    process gathers each whole update, orthogonalises it (the same work as under DDP), and applies its own shard."""

    def __init__(self, params, lr=1e-3, weight_decay=0.0, momentum=0.95, nesterov=True, ns='jordan',
                 betas=(0.9, 0.999), eps=1e-8, fused=False):
        # fused: the AdamW groups in one CUDA kernel (load_state_dict then keeps their step counts on the device)
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns=ns,
                        betas=betas, eps=eps, use_muon=False, fused=fused)
        if ns not in NEWTON_SCHULZ:
            raise ValueError(f"Muon: ns must be one of {', '.join(NEWTON_SCHULZ)}, got '{ns}'")
        super().__init__(params, defaults)
        self.update = muon_update  # configure_muon(compile=True): torch.compile(muon_update), one graph per shape
        for group in self.param_groups:
            if group['use_muon'] and any(p.dim() != 2 for p in group['params']):
                raise ValueError("Muon: a use_muon group takes 2-D matrices only")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group['params'] if p.grad is not None]  # none after a skipped (non-finite) step
            if params:
                (self._muon if group['use_muon'] else self._adamw)(group, params)
        return loss

    def _muon(self, group, params):
        lr, wd = group['lr'], group['weight_decay']
        if self.update is not muon_update:  # compiled: 0-d tensors, so that a new lr needs no new graph
            lr, wd = torch.as_tensor(lr), torch.as_tensor(wd)
        for ps in by_shape(params).values():
            bufs = [self.state[p].setdefault('momentum_buffer', torch.zeros_like(p)) for p in ps]
            self.update(ps, [p.grad for p in ps], bufs, lr, wd, group['momentum'], group['nesterov'],
                        group['ns'])

    def _adamw(self, group, params):
        for p in params:
            if not self.state[p]:
                self.state[p].update(step=torch.zeros((), device=p.device), exp_avg=torch.zeros_like(p),
                                     exp_avg_sq=torch.zeros_like(p))
        state = [self.state[p] for p in params]
        beta1, beta2 = group['betas']
        adamw(  # torch.optim.AdamW's own update; fused into one kernel on CUDA
            params, [p.grad for p in params], [s['exp_avg'] for s in state], [s['exp_avg_sq'] for s in state], [],
            [s['step'] for s in state], fused=group['fused'], foreach=False, amsgrad=False, beta1=beta1, beta2=beta2,
            lr=group['lr'], weight_decay=group['weight_decay'], eps=group['eps'], maximize=False)


# ----------------------------------------------------------------------------- schedule and weight average
def lr_at(it, learning_rate, warmup_iters, decay_iters, min_lr):
    """The learning rate of step it (0-based): a linear warmup over warmup_iters steps up to learning_rate (step
    warmup_iters - 1 takes learning_rate * warmup_iters / (warmup_iters + 1), step warmup_iters learning_rate itself),
    then a cosine from learning_rate down to min_lr at decay_iters, counted from the end of the warmup; min_lr after."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


class EMA:
    """An exponential moving average of the weights (Polyak & Juditsky 1992): after each optimizer step,
    average <- average + (1 - d)(weights - average), with d = decay, or (1 + step) / (10 + step) while that is
    smaller, so that the first steps' weights do not linger. Under FSDP2 each process averages its own shards.
    saved: a state_dict of averaged weights to start from (a resumed run's); else the model's weights."""

    def __init__(self, model, decay, saved=None):
        self.decay = decay
        self.weights = [local(p) for p in model.parameters()]  # views: what is written to them reaches the model
        saved = saved or {}
        self.average = [local(shard_like(saved[n].to(w.device), p)).clone() if n in saved else w.clone()
                        for (n, p), w in zip(model.named_parameters(), self.weights)]

    @torch.no_grad()
    def update(self, step):
        torch._foreach_lerp_(self.average, self.weights, 1 - min(self.decay, (1 + step) / (10 + step)))

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_in(self):
        """Inside this block the model holds the averaged weights, after it its trained ones again."""
        trained = [w.clone() for w in self.weights]
        torch._foreach_copy_(self.weights, self.average)
        try:
            yield
        finally:
            torch._foreach_copy_(self.weights, trained)
