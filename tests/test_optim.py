"""Muon (optim.Muon, optim.configure_muon, train.py --optim=muon): the documented rule by hand, AdamW for the rest as
torch computes it, learning, and checkpoints that resume exactly."""
import copy
import io
import math

import pytest
import torch

from common import load_checkpoint
from model import GPT, GPTConfig
from optim import NEWTON_SCHULZ, OPTIMIZERS, Muon, aol, configure_adamw, configure_muon, newton_schulz
from parallel import load_optimizer_state
from test_faults import assert_error, evals, train

TINY = dict(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16, bias=True, tie_weights=False)
HYPER = dict(weight_decay=0.1, learning_rate=0.01, betas=(0.9, 0.95), device_type='cpu')


def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY))


def random_grads(model, seed):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


@pytest.mark.parametrize('shape', [(96, 32), (32, 96)])  # tall (transposed inside) and wide
def test_newton_schulz_gives_singular_values_near_one(shape):
    torch.manual_seed(0)
    G = torch.randn(shape) * 3.0
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    O = newton_schulz(G)
    assert O.shape == G.shape and O.dtype == G.dtype
    s = torch.linalg.svdvals(O)
    assert 0.5 <= s.min() and s.max() <= 1.5, s  # the quintic's spread, not exactly 1
    assert torch.linalg.norm(O - U @ Vh) / torch.linalg.norm(U @ Vh) < 0.3  # near U V^T, G's orthogonal factor


def by_hand_ns(G):
    """The documented iteration, written out again: normalise, 5 quintic steps on the wide orientation."""
    X = G.t() if G.shape[0] > G.shape[1] else G
    X = X / X.norm()
    for _ in range(5):
        A = X @ X.t()
        X = 3.4445 * X - 4.7750 * A @ X + 2.0315 * A @ A @ X
    return X.t() if G.shape[0] > G.shape[1] else X


@pytest.mark.parametrize('shape', [(32, 96), (96, 32), (48, 48), (3, 32, 40)])  # small side (CPU); tall; square; batch
def test_newton_schulz_is_the_documented_iteration(shape):
    """On a CPU a matrix 1.5x as wide as tall or more iterates on its small side (A <- QAQ): the same result."""
    torch.manual_seed(0)
    G = torch.randn(shape)
    expected = torch.stack([by_hand_ns(g) for g in G.reshape(-1, *shape[-2:])]).reshape(shape)
    torch.testing.assert_close(newton_schulz(G), expected, atol=1e-5, rtol=1e-4)


def composed(coefficients, s):
    """Where Newton-Schulz takes singular values s of the normalised matrix: p_5(...p_1(s)), p(s) = a s + b s^3 + c s^5."""
    for a, b, c in coefficients:
        s = a * s + b * s**3 + c * s**5
    return s


@pytest.mark.parametrize('ns, smallest, low, high', [('jordan', 1e-2, 0.68, 1.14), ('polar_express', 1e-3, 0.84, 1.15)])
def test_each_coefficient_table_puts_singular_values_where_its_comment_says(ns, smallest, low, high):
    rescale, coefficients = NEWTON_SCHULZ[ns]
    assert rescale == 'frobenius'  # a scalar: the singular values keep their order and ratios
    s = composed(coefficients, torch.logspace(math.log10(smallest), 0, 2001, dtype=torch.float64))
    assert low <= s.min() < low + 0.01 and high - 0.01 < s.max() <= high, (s.min(), s.max())  # the stated range
    torch.manual_seed(0)  # and newton_schulz applies exactly that to a matrix's singular values
    U, _ = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(256, 64, dtype=torch.float64))
    S = torch.logspace(0, math.log10(smallest), 64, dtype=torch.float64)
    G = U @ torch.diag(S) @ V.T
    O = torch.linalg.svdvals(newton_schulz(G.float(), NEWTON_SCHULZ[ns]).double())
    expected = composed(coefficients, S / torch.linalg.norm(G)).sort(descending=True).values
    torch.testing.assert_close(O, expected, atol=2e-3, rtol=0)


def power_law(n=4, r=48, c=192):
    """n matrices r x c with singular values 1/i, as gradients have, and their orthogonal factors U V^T (float64)."""
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(n, r, r, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, c, r, generator=g, dtype=torch.float64))[0]
    return (U * torch.arange(1, r + 1, dtype=torch.float64) ** -1.0) @ V.mT, U @ V.mT


@pytest.mark.parametrize('ns', list(NEWTON_SCHULZ))
def test_the_gram_form_is_the_plain_iteration_also_in_float16(ns):
    """Muon on CUDA runs wide matrices in the Gram form in float16 (with its restart after 2 steps): within 0.5% of
    the plain iteration in float64 (without the restart it is 1.7-3% off; in bfloat16 20-33%). float32: 1e-4."""
    G, _ = power_law()
    plain = newton_schulz(G, NEWTON_SCHULZ[ns], gram=False, dtype=torch.float64)
    for dtype, tolerance in ((torch.float16, 5e-3), (torch.float32, 1e-4)):
        O = newton_schulz(G.float(), NEWTON_SCHULZ[ns], gram=True, dtype=dtype).double()
        assert torch.linalg.norm(O - plain) / torch.linalg.norm(plain) < tolerance, dtype


def test_aol_starts_the_singular_values_nearer_one_and_turbo_needs_a_step_fewer():
    """AOL's rescaling (Turbo-Muon) keeps the spectral norm <= 1 and lifts what X / ||X||_F leaves (0.78 at the top
    here); from there Polar Express's last 4 steps put the top 90% of singular values in [0.85, 1.15], as its 5 do from
    X / ||X||_F, and land nearer to U V^T than Muon's own 5 steps (0.17 against 0.20 here)."""
    G, polar = power_law()
    X = G / torch.linalg.norm(G, dim=(-2, -1), keepdim=True)
    Xa, A = aol(X, X @ X.mT)
    torch.testing.assert_close(A, Xa @ Xa.mT)  # its XX^T, without a product of its own
    s, sa = torch.linalg.svdvals(X), torch.linalg.svdvals(Xa)
    assert (sa[:, 0] <= 1).all() and (sa[:, 0] > s[:, 0] + 0.15).all() and (sa[:, -1] > s[:, -1]).all()
    assert len(NEWTON_SCHULZ['turbo'][1]) == len(NEWTON_SCHULZ['polar_express'][1]) - 1
    turbo, jordan = (newton_schulz(G.float(), NEWTON_SCHULZ[ns]).double() for ns in ('turbo', 'jordan'))
    top = torch.linalg.svdvals(turbo)[:, :43]  # the top 90%
    assert 0.85 < top.min() and top.max() < 1.15
    assert torch.linalg.norm(turbo - polar) < torch.linalg.norm(jordan - polar)


def test_a_resumed_muon_takes_this_runs_coefficients_also_from_a_checkpoint_of_before_the_ns_key():
    model = tiny_model()
    opt = configure_muon(model, **HYPER)
    random_grads(model, 0)
    opt.step()
    state = opt.state_dict()
    for group in state['param_groups']:  # as checkpoints wrote it before: ns_steps, no ns
        group['ns_steps'] = group.pop('ns')
    resumed = configure_muon(model, **HYPER, ns='polar_express')
    load_optimizer_state(model, resumed, state, fsdp=False)
    assert {g['ns'] for g in resumed.param_groups} == {'polar_express'}
    before = [p.detach().clone() for p in model.parameters()]
    resumed.step()  # steps with this run's coefficients (no KeyError on the old groups)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="ns must be one of jordan, polar_express, turbo, got 'cubic'"):
        configure_muon(model, **HYPER, ns='cubic')


def test_muon_groups_and_two_steps_by_hand():
    model = tiny_model()
    opt = configure_muon(model, **HYPER)
    assert isinstance(opt, Muon) and OPTIMIZERS['muon'] is configure_muon
    muon = {id(p) for g in opt.param_groups if g['use_muon'] for p in g['params']}
    names = {n for n, p in model.named_parameters() if id(p) in muon}
    assert names == {f'blocks.{i}.{m}.weight' for i in range(2) for m in
                     ('mixer.c_attn', 'mixer.c_proj', 'ffn.c_fc', 'ffn.c_proj')}  # the block matrices, nothing else
    decayed = {n for n, p in model.named_parameters() for g in opt.param_groups
               if not g['use_muon'] and g['weight_decay'] > 0 and any(p is q for q in g['params'])}
    assert decayed == {'wte.weight', 'wpe.weight', 'lm_head.weight'}  # AdamW's decay: >= 2-D, outside the blocks

    name, lr, wd, mu = 'blocks.1.ffn.c_fc.weight', HYPER['learning_rate'], HYPER['weight_decay'], 0.95
    p = dict(model.named_parameters())[name]
    expected, buf = p.detach().clone(), torch.zeros_like(p)
    for step, new_lr in ((1, lr), (2, lr / 2)):  # the schedule sets param_group['lr'] between steps
        for group in opt.param_groups:
            group['lr'] = new_lr
        random_grads(model, step)
        buf = mu * buf + p.grad  # momentum, then Nesterov
        update = by_hand_ns(p.grad + mu * buf) * 0.2 * math.sqrt(max(p.shape))  # 64 x 16: max 64
        expected = expected * (1 - new_lr * wd) - new_lr * update
        opt.step()
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=1e-5)
    assert p.shape == (64, 16)


def test_the_adamw_groups_step_as_torch_adamw():
    model = tiny_model()
    ref = copy.deepcopy(model)
    opt = configure_muon(model, **HYPER)
    ref_opt = configure_adamw(ref, **HYPER)  # torch.optim.AdamW with the same groups and hyperparameters
    for step, lr in enumerate((0.01, 0.005, 0.002)):
        for o in (opt, ref_opt):
            for group in o.param_groups:
                group['lr'] = lr
        random_grads(model, step)
        random_grads(ref, step)
        opt.step()
        ref_opt.step()
    muon = {id(p) for g in opt.param_groups if g['use_muon'] for p in g['params']}
    compared = 0
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        if id(p) not in muon:
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
            compared += 1
    assert compared == 3 + 2 * (4 + 4) + 2  # wte, wpe, lm_head; per block 2 norms (gain, bias) and 4 biases; ln_f


def test_muon_lowers_the_loss_and_resumes_exactly_from_a_weights_only_state_dict():
    model = tiny_model()
    opt = configure_muon(model, **HYPER)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(11, (2, 4, 8), generator=g) for _ in range(20)]

    def steps(model, opt, batches):
        losses = []
        for x, y in batches:
            _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses

    first = steps(model, opt, batches[:10])
    buffer = io.BytesIO()
    torch.save({'model': model.state_dict(), 'optimizer': opt.state_dict()}, buffer)
    straight = steps(model, opt, batches[10:])
    assert sum(straight[-5:]) < sum(first[:5])  # it learns (batches of random tokens: below its start, not to 0)

    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    resumed_model = GPT(GPTConfig(**TINY))
    resumed_model.load_state_dict(ckpt['model'])
    resumed_opt = configure_muon(resumed_model, **HYPER)
    resumed_opt.load_state_dict(ckpt['optimizer'])
    assert steps(resumed_model, resumed_opt, batches[10:]) == straight  # momentum and moments came back


def test_train_py_with_muon_learns_and_resumes_with_muon_only(tmp_path, char_data):
    out = tmp_path / 'out'
    first = evals(train(char_data, out, '--optim=muon', '--max_iters=10', '--eval_interval=5', check=True).stdout)
    assert [e[0] for e in first] == ['0', '5', '10'] and float(first[-1][2]) < float(first[0][2])
    assert_error(train(char_data, out, '--optim=sgd'), "optim must be one of adamw, muon, got 'sgd'")
    assert_error(train(char_data, out, '--muon_ns=cubic'),
                 "muon_ns must be one of jordan, polar_express, turbo, got 'cubic'")
    assert_error(train(char_data, out, '--optim=adamw', '--init_from=resume', '--max_iters=20'),
                 "was trained with optim='muon'", '--optim=muon')


# ----------------------------------------------------------------------------- EMA of the weights (train.py)
def test_ema_is_the_average_evals_measure_and_checkpoints_keep_and_it_resumes_exactly(tmp_path, char_data):
    ema = ['--ema_decay=0.9', '--eval_interval=1', '--dropout=0.1']

    def run_to(n, out, *args):
        return evals(train(char_data, tmp_path / out, f'--max_iters={n}', '--lr_decay_iters=2', *args,
                           check=True).stdout)

    def weights(out):
        ckpt = load_checkpoint(tmp_path / out / 'last.pt')
        return ckpt['model'], ckpt.get('trained_model')

    run_to(0, 'start', *ema)
    run_to(1, 'resumed', *ema)
    (w0, _), (e1, w1) = weights('start'), weights('resumed')
    resumed = run_to(2, 'resumed', *ema, '--init_from=resume')
    straight = run_to(2, 'straight', *ema)
    plain = run_to(2, 'plain', *ema[1:])
    (e2, w2), (e2_straight, w2_straight) = weights('resumed'), weights('straight')
    for k in w0:  # d_t = min(0.9, (1 + t) / (10 + t)): 0.1 after the first step, 2/11 after the second
        e1_by_hand = w0[k] + 0.9 * (w1[k] - w0[k])
        torch.testing.assert_close(e1[k], e1_by_hand)
        torch.testing.assert_close(e2[k], e1_by_hand + 9 / 11 * (w2[k] - e1_by_hand))
        assert torch.equal(e2[k], e2_straight[k]) and torch.equal(w2[k], w2_straight[k])  # resumed exactly
    plain_model, _ = weights('plain')
    assert all(torch.equal(plain_model[k], w2[k]) for k in w2)  # the average does not change training
    assert resumed == straight[1:]  # the resumed run evaluates the average it saved
    assert straight[0] == plain[0] and all(s[2] != p[2] for s, p in zip(straight[1:], plain[1:]))  # evals: averages
