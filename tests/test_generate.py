"""Generation: the KV cache gives exactly the reference's tokens; sampling controls do what they say."""
import pytest
import torch

from model import GPT, GPTConfig, sample_logits

V, BLOCK = 23, 16


def build(**kw):
    torch.manual_seed(0)
    cfg = dict(block_size=BLOCK, vocab_size=V, n_layer=2, n_head=4, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


VARIANTS = [dict(n_kv_head=h, pos_emb=p) for h in (4, 2, 1) for p in ('learned', 'sinusoidal', 'rope')]


@pytest.mark.parametrize('kw', VARIANTS, ids=lambda kw: f"kv{kw['n_kv_head']}-{kw['pos_emb']}")
def test_cached_generation_equals_uncached(kw):
    model = build(**kw)
    prompt = torch.randint(V, (3, 5))
    n = 3 * BLOCK  # well past block_size: the context is cropped and prefilled again, twice
    assert torch.equal(model.generate(prompt, n, temperature=0, kv_cache=True),
                       model.generate(prompt, n, temperature=0))
    sampled = [model.generate(prompt, n, temperature=1.0, top_k=10, top_p=0.9, kv_cache=cache,
                              generator=torch.Generator().manual_seed(7)) for cache in (True, False)]
    assert torch.equal(*sampled)
    long_prompt = torch.randint(V, (2, BLOCK + 3))  # a prompt longer than the context keeps its newest tokens
    assert torch.equal(model.generate(long_prompt, 5, temperature=0, kv_cache=True),
                       model.generate(long_prompt, 5, temperature=0))


@pytest.mark.parametrize('kw', [dict(), dict(n_kv_head=1, pos_emb='rope'), dict(attn_impl='manual', n_kv_head=2)])
def test_prefill_then_decode_equals_full_forward(kw):
    model = build(**kw)
    idx = torch.randint(V, (2, 9))
    full = model(idx)[0]  # (B, T, V)
    model.setup_cache(2)
    torch.testing.assert_close(model.step(idx[:, :6], torch.arange(6)), full[:, 5], rtol=1e-5, atol=1e-5)
    for t in range(6, 9):  # one token at a time
        torch.testing.assert_close(model.step(idx[:, t:t + 1], torch.tensor([t])), full[:, t], rtol=1e-5, atol=1e-5)
    model.clear_cache()


NON_ATTENTION = [dict(mixer='mean'), dict(mixer='window', window=3), dict(mixer='wavenet'),
                 dict(mixer='none', n_layer=0), dict(mixer='none', n_layer=2)]  # bigram table; FFN-only stack


@pytest.mark.parametrize('kw', NON_ATTENTION, ids=['mean', 'window', 'wavenet', 'bigram', 'ffn-only'])
def test_mixers_without_attention_decode_from_their_cache(kw):
    """kv_cache=True runs every mixer through model.step: a prefill, then one token per step from the cache,
    with the very tokens of the plain path (the context cropped and prefilled again past block_size)."""
    model = build(**kw)
    calls = []
    step = model.step
    model.step = lambda idx, input_pos: calls.append(idx.size(1)) or step(idx, input_pos)
    prompt = torch.randint(V, (2, 5))
    n = 3 * BLOCK
    for sampling in (dict(temperature=0), dict(temperature=1.0, top_k=10)):
        probs, out = {True: [], False: []}, {}  # the distribution of every token drawn, the tokens: per path
        for cache in (False, True):
            calls.clear()
            gen = torch.Generator().manual_seed(7)
            out[cache] = model.generate(prompt, n, **sampling, kv_cache=cache, generator=gen,
                                        on_token=lambda _, p: probs[cache].append(p))
            assert cache or calls == []  # the plain path never steps
        assert torch.equal(out[True], out[False]), sampling
        torch.testing.assert_close(torch.stack(probs[True]), torch.stack(probs[False]), rtol=1e-5, atol=1e-6)
        assert len(calls) == n and calls[0] == 5  # a prefill of the prompt, then one token per step ...
        assert [c for c in calls[1:] if c != 1] == [BLOCK // 2] * 4  # ... but for the newest half at each crop
    assert all(m.cache is not None for m in model.mixers())
    assert len(model.mixers()) == (0 if kw['mixer'] == 'none' else kw.get('n_layer', 2))


def test_greedy_top_k_1_and_tiny_top_p_agree():
    torch.manual_seed(0)
    logits = torch.randn(64, V)
    greedy = sample_logits(logits, temperature=0)[0]
    assert torch.equal(greedy, logits.argmax(-1, keepdim=True))
    assert torch.equal(sample_logits(logits, 1.0, top_k=1)[0], greedy)
    assert torch.equal(sample_logits(logits, 1.0, top_p=1e-9)[0], greedy)


def test_nucleus_never_samples_outside_it():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(2000, 1)
    ids, used = sample_logits(logits, 1.0, top_p=0.75, generator=torch.Generator().manual_seed(0))
    assert set(ids.flatten().tolist()) == {0, 1}  # 0.5 + 0.3 reach 0.75; 0.15 and 0.05 are outside
    torch.testing.assert_close(used[0], torch.tensor([0.625, 0.375, 0.0, 0.0]))
    ids, _ = sample_logits(logits, 1.0, top_p=1.0, generator=torch.Generator().manual_seed(0))
    assert set(ids.flatten().tolist()) == {0, 1, 2, 3}


def test_on_token_sees_every_token_with_its_distribution():
    model = build()
    seen = []
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 7, temperature=0.8, kv_cache=True,
                         on_token=lambda ids, probs: seen.append((ids.item(), probs[0, ids.item()].item())))
    assert [t for t, _ in seen] == out[0, 1:].tolist() and all(0 < p <= 1 for _, p in seen)
