"""Every GPTConfig variant: causality, sdpa == manual attention, parameter arithmetic, RoPE, training."""
import itertools

import pytest
import torch

from model import GPT, GPTConfig, apply_rope, rope_cache
from optim import configure_adamw

V, T = 13, 12


def build(**kw):
    torch.manual_seed(0)
    cfg = dict(block_size=T, vocab_size=V, n_layer=2, n_head=4, n_embd=32, bias=False)
    return GPT(GPTConfig(**{**cfg, **kw}))


def test_bad_flag_lists_the_allowed_values():
    with pytest.raises(ValueError, match="mixer='bad' is not one of attn, mean, none, window, wavenet"):
        GPTConfig(mixer='bad')
    with pytest.raises(ValueError, match='n_kv_head=3 must divide n_head=4'):
        GPTConfig(n_head=4, n_embd=32, n_kv_head=3)


MIXER_KINDS = [dict(mixer='attn'), dict(mixer='attn', n_kv_head=2), dict(mixer='attn', n_kv_head=1),
               dict(mixer='attn', attn_impl='manual'), dict(mixer='attn', qk_norm=True), dict(mixer='mean'),
               dict(mixer='none'), dict(mixer='window', window=3), dict(mixer='wavenet')]
POSITIONS = ['none', 'learned', 'sinusoidal', 'rope']


@pytest.mark.parametrize('mixer,pos_emb', list(itertools.product(MIXER_KINDS, POSITIONS)),
                         ids=lambda v: '-'.join(f"{x}" for x in v.values()) if isinstance(v, dict) else v)
def test_no_leak_from_the_future(mixer, pos_emb):
    model = build(pos_emb=pos_emb, **mixer).eval()
    idx = torch.randint(V, (2, T))
    logits, _ = model(idx)
    for t in (0, 4, T - 1):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        torch.testing.assert_close(model(changed)[0][:, :t], logits[:, :t], rtol=0, atol=1e-6)


@pytest.mark.parametrize('n_kv_head', [4, 2, 1], ids=['mha', 'gqa', 'mqa'])
@pytest.mark.parametrize('pos_emb', ['learned', 'rope'])
def test_sdpa_and_manual_attention_agree(n_kv_head, pos_emb):
    sdpa = build(n_kv_head=n_kv_head, pos_emb=pos_emb, attn_impl='sdpa').eval()
    manual = build(n_kv_head=n_kv_head, pos_emb=pos_emb, attn_impl='manual').eval()
    manual.load_state_dict(sdpa.state_dict())
    idx = torch.randint(V, (3, T))
    torch.testing.assert_close(manual(idx)[0], sdpa(idx)[0], rtol=1e-5, atol=1e-5)


def test_manual_attention_keeps_causal_probabilities():
    model = build(attn_impl='manual').eval()
    attn = model.blocks[0].mixer
    attn.keep_probs = True
    model(torch.randint(V, (1, T)))
    probs = attn.probs  # (B, nh, T, T)
    assert probs.shape == (1, 4, T, T)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 4, T))
    assert (probs.triu(1) == 0).all()  # nothing attends to the future


def test_kv_heads_change_params_by_the_arithmetic():
    C, L, hs = 32, 2, 8
    mha = build().get_num_params()
    for n_kv in (2, 1):
        saved = L * 2 * (4 - n_kv) * hs * C  # k and v projections shrink from 4 heads to n_kv heads
        assert build(n_kv_head=n_kv).get_num_params() == mha - saved


def test_gpt2_small_has_124m_params():
    model = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024, bias=True))
    C, L, V, T = 768, 12, 50257, 1024
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    total = V * C + T * C + L * block + 2 * C  # tied lm_head counts once; final LayerNorm
    assert total == 124_439_808
    assert model.get_num_params(non_embedding=False) == total
    assert model.get_num_params() == total - T * C  # nanoGPT's "123.65M"


def test_swiglu_keeps_the_parameter_count():
    gelu, swiglu = build(ffn='gelu'), build(ffn='swiglu')
    assert abs(swiglu.get_num_params() - gelu.get_num_params()) <= 2 * 3 * 32  # rounding of 2/3 * 4 * 32
    assert build(ffn='gelu', ffn_mult=2).get_num_params() == gelu.get_num_params() - 2 * 2 * (2 * 32 * 32)


def test_tie_weights_and_init_flags():
    x = torch.randn(2, 32)
    for tie in (True, False):
        model = build(tie_weights=tie)
        before = model.lm_head(x)
        with torch.no_grad():
            model.wte.weight[3] += 1.0  # one token's embedding
        changed = not torch.equal(model.lm_head(x)[:, 3], before[:, 3])
        assert (model.wte.weight is model.lm_head.weight) == tie and changed == tie, f"tie_weights={tie}"
    tied, untied = build(), build(tie_weights=False)
    assert untied.get_num_params(non_embedding=False) == tied.get_num_params(non_embedding=False) + V * 32
    assert untied.get_num_params() == tied.get_num_params()  # the untied token table is a lookup, not in N
    gpt2, default = build(init='gpt2'), build(init='default')
    assert abs(gpt2.wte.weight.std().item() - 0.02) < 0.005
    assert abs(default.blocks[0].ffn.c_fc.weight.std().item() - 0.02) > 0.05  # PyTorch's kaiming-uniform


def test_rope_scores_depend_only_on_relative_offsets():
    hs = 16
    cos, sin = rope_cache(64, hs, 10000.0)
    q, k = torch.randn(2, 1, 1, 5, hs).unbind(0)  # (B, nh, T, hs)

    def scores(offset):
        pos = torch.arange(5) + offset
        rq, rk = apply_rope(q, (cos[pos], sin[pos])), apply_rope(k, (cos[pos], sin[pos]))
        return rq @ rk.transpose(-2, -1)

    torch.testing.assert_close(scores(0), scores(37), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores(0), q @ k.transpose(-2, -1), atol=1e-3)  # and it does rotate


def overfit(model, steps=150, lr=1e-2):
    opt = configure_adamw(model, 0.0, lr, (0.9, 0.99), 'cpu')
    torch.manual_seed(1)
    x, y = torch.randint(V, (2, 4, T))
    losses = []
    for _ in range(steps):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize('norm_pos', ['pre', 'post'])
def test_pre_and_post_layernorm_overfit_one_batch(norm_pos):
    assert overfit(build(norm_pos=norm_pos))[-1] < 0.1


def test_deep_stack_without_residuals_or_norms_still_trains():
    model = build(n_layer=4, residual=False, norm='none', attn_proj=False, ffn='relu', init='default')
    losses = overfit(model, steps=60, lr=3e-3)  # badly: that is the point of the rung (pre-LN reaches < 0.1)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.1


REACH = [(dict(mixer='attn'), T), (dict(mixer='mean'), T),
         (dict(mixer='window', window=3), 2 * 2 + 1),  # 2 layers of 3 positions: t-4 .. t
         (dict(mixer='wavenet'), 4)]  # dilations 1, 2: t-3 .. t


@pytest.mark.parametrize('mixer,reach', REACH, ids=[kw['mixer'] for kw, _ in REACH])
def test_each_mixer_sees_exactly_its_receptive_field(mixer, reach):
    """logits[t] change with token s iff t - reach < s <= t: the mixer carries the past, and only as far as it
    reaches (pos_emb='none': no position can tell where it is except through the mixer)."""
    model = build(pos_emb='none', **mixer).eval()
    idx = torch.randint(V, (1, T))
    logits = model(idx)[0][0]
    for s in range(T):
        changed = idx.clone()
        changed[0, s] = (changed[0, s] + 1) % V
        diff = (model(changed)[0][0] - logits).abs().amax(-1)  # (T,) per position
        for t in range(T):
            if t - reach < s <= t:
                assert diff[t] > 1e-5, f"position {t} does not see token {s}"
            else:
                assert diff[t] <= 1e-6, f"position {t} sees token {s}"
