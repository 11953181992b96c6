"""The GPT-2-style model: shapes, initial loss, causality, learning, checkpoint round trips."""
import math

import pytest
import torch

from common import device_setup, peak_flops
from model import GPT, GPTConfig, clean_state_dict, eval_sums
from optim import configure_adamw

TINY = dict(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def tiny_model(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **kw}))


def test_forward_backward_finite_and_initial_loss_is_uniform():
    model = tiny_model()
    idx, targets = torch.randint(11, (2, 8, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (8, 16, 11)  # logits for every position, not just the last
    assert abs(loss.item() - math.log(11)) < 0.1  # small init: close to a uniform guess
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model(idx)[1] is None


def test_no_information_from_the_future():
    model = tiny_model().eval()
    idx = torch.randint(11, (1, 16))
    logits, _ = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[0, t] = (changed[0, t] + 1) % 11
        logits2, _ = model(changed)
        assert torch.equal(logits[0, :t], logits2[0, :t]), f"positions before {t} saw token {t}"
        assert not torch.allclose(logits[0, t], logits2[0, t])  # and position t itself does see it


def test_overfits_one_batch():
    model = tiny_model()
    opt = configure_adamw(model, 0.0, 1e-2, (0.9, 0.99), 'cpu')
    torch.manual_seed(1)
    x = torch.randint(11, (4, 16))
    y = torch.randint(11, (4, 16))
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_weight_tying_and_param_count():
    model = tiny_model()
    assert model.wte.weight is model.lm_head.weight
    C, V, L, T = 16, 11, 2, 16
    per_block = (2 * 2 * C) + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)  # bias=True
    assert model.get_num_params(non_embedding=False) == V * C + T * C + L * per_block + 2 * C
    assert model.get_num_params() == V * C + L * per_block + 2 * C


def test_optimizer_decays_only_matrices():
    model = tiny_model()
    opt = configure_adamw(model, 0.1, 1e-3, (0.9, 0.95), 'cpu')
    decay, no_decay = opt.param_groups
    assert decay['weight_decay'] == 0.1 and all(p.dim() == 2 for p in decay['params'])
    assert no_decay['weight_decay'] == 0.0 and all(p.dim() == 1 for p in no_decay['params'])
    n = sum(p.numel() for g in opt.param_groups for p in g['params'])
    assert n == model.get_num_params(non_embedding=False)


def test_flops_per_token_of_gpt2_small_by_hand():
    """6N + 12 L C T: N is every weight that multiplies (the tied output layer once, no position table)."""
    with torch.device('meta'):  # shapes only: no memory, no init time
        model = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024, bias=True))
    C, L, V, T = 768, 12, 50257, 1024
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    n = V * C + L * block + 2 * C  # wte == lm_head (tied), counted once; final LayerNorm; no wpe (a lookup)
    assert n == 124_439_808 - T * C == 123_653_376
    attention = 12 * L * C * T  # q k^T and probs @ v: 2 matmuls x 2 FLOPs x C x T forward, x3 with backward
    assert attention == 113_246_208
    assert model.flops_per_token() == 6 * n + attention == 855_166_464


def test_flops_per_token_untied_gqa_swiglu_by_hand():
    """Untied: the token table is a lookup (not counted), lm_head a matmul (counted once)."""
    V, T, C, L, nh, nkv = 13, 12, 32, 2, 4, 2
    model = tiny_model(vocab_size=V, block_size=T, n_embd=C, n_layer=L, n_head=nh, n_kv_head=nkv, ffn='swiglu',
                       bias=False, tie_weights=False)
    hs, hidden = C // nh, 85  # SwiGLU hidden = round(2/3 * 4 * 32) = 85
    attn = C * (C + 2 * nkv * hs) + C * C  # fused q/k/v with 2 kv heads (32 x 64), output projection
    block = 2 * C + attn + 3 * C * hidden  # two LayerNorm gains (bias=False), w1, w3, c_proj
    n = L * block + C + V * C  # final LayerNorm gain, lm_head
    assert n == 23_040
    assert model.get_num_params(non_embedding=False) == n + V * C + T * C  # + token table + position table
    assert model.flops_per_token() == 6 * n + 12 * L * C * T == 138_240 + 9_216


def test_bigram_flops_count_only_the_output_layer():
    """n_layer=0, untied: one embedding lookup (free) and one V x C matmul. Counting the lookup doubled the MFU."""
    V, C = 65, 128
    model = tiny_model(vocab_size=V, n_embd=C, n_layer=0, n_head=1, mixer='none', ffn='none', norm='none',
                       bias=False, pos_emb='none', tie_weights=False, attn_proj=False, residual=False)
    assert model.get_num_params(non_embedding=False) == 2 * V * C
    assert model.flops_per_token() == 6 * V * C


def test_estimate_mfu_is_one_devices_flops_over_its_peak():
    model = tiny_model()
    f = model.flops_per_token()
    assert model.estimate_mfu(1000, 989e12) == pytest.approx(f * 1000 / 989e12, rel=1e-12)
    assert model.estimate_mfu(989e12 / f / 2, 989e12) == pytest.approx(0.5, rel=1e-12)
    assert model.estimate_mfu(1000, None) is None


@pytest.mark.parametrize('name,dtype,peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989e12), ('NVIDIA H100 80GB HBM3', 'float16', 989e12),
    ('NVIDIA H100 80GB HBM3', 'float32', 495e12),  # float32 matmuls run on TF32 tensor cores
    ('NVIDIA H100 PCIe', 'bfloat16', 756e12), ('NVIDIA H100 NVL', 'bfloat16', 835e12),  # not the SXM figure
    ('NVIDIA H200', 'bfloat16', 989e12),
    ('NVIDIA A100-SXM4-80GB', 'bfloat16', 312e12), ('NVIDIA A100-SXM4-80GB', 'float32', 156e12),
    ('cpu', 'float32', None), ('cpu', 'bfloat16', None),
])
def test_peak_flops_per_device_and_dtype(name, dtype, peak):
    assert peak_flops(name, dtype) == peak


def test_generate_extends_the_prompt_and_crops_to_block_size():
    model = tiny_model().eval()
    idx = torch.randint(11, (2, 3))
    out = model.generate(idx, 20, temperature=1.0, top_k=5)  # 23 tokens > block_size 16
    assert out.shape == (2, 23) and torch.equal(out[:, :3], idx)
    greedy = model.generate(idx, 5, temperature=0)
    assert torch.equal(greedy, model.generate(idx, 5, temperature=0))


def test_bad_config_is_rejected_before_allocation():
    with pytest.raises(ValueError, match='divisible'):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match='dropout'):
        GPTConfig(dropout=1.5)


@pytest.mark.parametrize('compiled', [False, True])
def test_checkpoint_reloads_with_weights_only_and_identical_logits(tmp_path, compiled):
    model = tiny_model().eval()
    run_model = torch.compile(model) if compiled else model
    idx = torch.randint(11, (2, 16))
    expected = run_model(idx)[0]
    # a compiled model's state_dict carries '_orig_mod.' prefixes; DDP adds 'module.'
    state = {('module.' + k if compiled else k): v for k, v in run_model.state_dict().items()}
    torch.save({'model': state, 'model_args': TINY}, tmp_path / 'ckpt.pt')
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    fresh = GPT(GPTConfig(**ckpt['model_args'])).eval()
    fresh.load_state_dict(clean_state_dict(ckpt['model']))
    got = fresh(idx)[0]  # eager: the compiled model's kernels round differently
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if not compiled:
        assert torch.equal(got, expected)


def test_device_setup_is_one_rule_for_every_script():
    system = device_setup('cpu')
    assert (system.device, system.device_type, system.dtype, system.name) == ('cpu', 'cpu', 'float32', 'cpu')
    assert not torch.is_autocast_enabled('cpu')
    with system.ctx:
        assert not torch.is_autocast_enabled('cpu')  # float32: no autocast
    with device_setup('cpu', 'bfloat16').ctx:
        assert torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or float16, got 'fp8'"):
        device_setup('cpu', 'fp8')


def test_eval_sums_against_a_hand_count():
    """Two tokens of 1 byte, one of 3 (a multi-byte character), and one without text (<|endoftext|>: 0 bytes)."""
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.1, 0.7, 0.1, 0.1], [0.2, 0.2, 0.4, 0.2], [0.25, 0.25, 0.25, 0.25]])
    logits = probs.clamp_min(1e-12).log()[None]  # (1, 4, V=4)
    targets = torch.tensor([[0, 2, 2, 3]])  # right, wrong, right, (a tie: argmax picks id 0) wrong
    token_bytes = torch.tensor([1, 1, 3, 0])
    nats, correct, tokens, text_nats, text_bytes = eval_sums(logits, targets, token_bytes)
    assert (correct, tokens, text_bytes) == (2, 4, 1 + 3 + 3)
    assert nats == pytest.approx(-math.log(0.5) - math.log(0.1) - math.log(0.4) - math.log(0.25), rel=1e-6)
    assert text_nats == pytest.approx(nats + math.log(0.25), rel=1e-6)  # <|endoftext|> has no text: left out
    bpb = text_nats / math.log(2) / text_bytes
    assert bpb == pytest.approx((1 + math.log2(10) + math.log2(2.5)) / 7, rel=1e-6)
