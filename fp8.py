"""
float8 for the output layer (train.py's and bench.py's fp8_head=True): its three products, logits = x w^T and the
gradients dx = g w and dw = g^T x, in float8, which an H100 multiplies at twice bfloat16's rate (the float8 output
layer of modded-nanogpt). A speed option, not a new model: the weights, checkpoints and sampling are the plain ones.
The plain path (model.head_loss) is what runs without it; tests/test_speed.py holds the two together.
"""
import torch

from model import head_loss


def to_float8(t, dtype):
    """t ~ t8 * scale: t8 in a float8 dtype, scaled so that its largest magnitude is the format's largest."""
    scale = (t.abs().amax().float() / torch.finfo(dtype).max).clamp(min=1e-30)
    return (t / scale).to(dtype), scale


class Float8HeadLoss(torch.autograd.Function):
    """model.head_loss with x and w in e4m3 and the logits' gradient g in e5m2, one scale each. g = (softmax - onehot)
    * dloss / n is largest at the targets (1 - p_y >= p_j), so its scale is read from n entries, not n x V. The logits
    come out in bfloat16; the loss is the mean over the targets that are not -1."""

    @staticmethod
    def forward(ctx, x, w, targets):  # x (N, C), w (V, C), targets (N,)
        x8, xs = to_float8(x, torch.float8_e4m3fn)
        w8, ws = to_float8(w, torch.float8_e4m3fn)
        logits = torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws, out_dtype=torch.bfloat16)  # (N, V)
        y, kept = targets.clamp(min=0)[:, None], (targets >= 0)[:, None]  # (N, 1) each
        lse = torch.logsumexp(logits.float(), dim=-1, keepdim=True)  # (N, 1)
        nats = lse - logits.gather(1, y).float()  # (N, 1): -log p_y
        n = kept.sum().clamp(min=1)
        ctx.save_for_backward(x8, xs, w8, ws, logits, lse, y, nats, kept, n)
        ctx.mark_non_differentiable(logits)
        return logits, (nats * kept).sum() / n

    @staticmethod
    def backward(ctx, _, dloss):
        x8, xs, w8, ws, logits, lse, y, nats, kept, n = ctx.saved_tensors
        rate = dloss * kept / n  # (N, 1): d loss / d logits = (p - onehot) * rate
        gs = ((1 - torch.exp(-nats)) * rate.abs()).amax().clamp(min=1e-30) / torch.finfo(torch.float8_e5m2).max
        onehot = torch.arange(logits.size(1), device=y.device) == y  # (N, V)
        g8 = (((logits.float() - lse).exp() - onehot.float()) * (rate / gs)).to(torch.float8_e5m2)  # (N, V)
        dx = torch._scaled_mm(g8, w8.t().contiguous().t(), scale_a=gs, scale_b=ws, out_dtype=torch.bfloat16)
        dw = torch._scaled_mm(g8.t().contiguous(), x8.t().contiguous().t(), scale_a=gs, scale_b=xs,
                              out_dtype=torch.float32)
        return dx, dw, None


def float8_head_loss(lm_head, x, targets):
    """model.head_loss's signature: x (B, T, C), targets (B, T) -> logits (B, T, V), loss. Without autograd (evals) it
    is model.head_loss itself: a val loss does not depend on a speed option."""
    if not torch.is_grad_enabled():
        return head_loss(lm_head, x, targets)
    logits, loss = Float8HeadLoss.apply(x.flatten(0, 1), lm_head.weight, targets.flatten())
    return logits.view(*x.shape[:-1], -1), loss


def use_float8_head(model, device='cpu'):
    """Train model's output layer in float8 from now on, on device (in place; returns the model). A ValueError says
    what it needs: float8 matmuls (a CUDA GPU of compute capability 8.9 or more; a CPU runs them, slowly), sizes
    divisible by 16."""
    device = torch.device(device)
    if device.type == 'cuda' and (cc := torch.cuda.get_device_capability(device)) < (8, 9):
        raise ValueError(f"fp8_head needs float8 matmuls, which {torch.cuda.get_device_name(device)} (compute "
                         f"capability {cc[0]}.{cc[1]}) lacks: they start at 8.9 (L4, RTX 4090, H100); train without it")
    if device.type not in ('cuda', 'cpu'):
        raise ValueError(f"fp8_head runs on CUDA GPUs (and, slowly, on CPUs), not on {device.type}; train without it")
    C, V = model.config.n_embd, model.config.vocab_size
    if C % 16 or V % 16:
        raise ValueError(f"fp8_head needs n_embd and vocab_size divisible by 16 (float8 matmuls), got {C} and {V} "
                         f"(a larger vocab_size pads it: --vocab_size={-(-V // 16) * 16})")
    model.head_loss = float8_head_loss
    return model
