"""Speed options change the speed, not the maths: the compiled training step gives the loss and gradients of the plain
(eager) one. Muon's batched update and the AdamW half of it are checked against their plain rules in test_optim.py."""
import re

import pytest
import torch
from conftest import REPO, TINY, run, run_here

from common import compile_on
from configurator import parse_config
from fp8 import use_float8_head
from model import GPT, GPTConfig, model_config
from optim import OPTIMIZERS, configure_muon


def loss_and_grads(model, step, X, Y):
    model.zero_grad(set_to_none=True)
    _, loss = step(X, Y)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_compiled_step_equals_the_eager_one():
    """And evals: train.py's compile_eval=False runs them through the plain model, whose logits in eval mode (a graph
    of its own when compiled) are the compiled model's."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=40))
    X, Y = torch.randint(40, (4, 16)), torch.randint(40, (4, 16))
    loss, grads = loss_and_grads(model, model, X, Y)
    compiled = torch.compile(model)
    try:
        compiled_loss, compiled_grads = loss_and_grads(model, compiled, X, Y)
    except Exception as e:  # no C++ compiler for inductor's CPU kernels, say
        pytest.skip(f"torch.compile does not run here: {type(e).__name__}")
    assert compiled_loss == pytest.approx(loss, rel=1e-5)
    for g, cg in zip(grads, compiled_grads):
        torch.testing.assert_close(cg, g, rtol=1e-4, atol=1e-6)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(X)[0], model(X)[0], rtol=1e-4, atol=1e-5)


def weights_after_three_steps(make_optimizer, before_step=lambda optimizer, k: None):
    """A tiny GPT (seed 0) after 3 steps on 3 batches (seed 0) with make_optimizer(model); before_step(optimizer, k)
    before step k. Its weights, flat: the same model and batches every call."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8, vocab_size=20))
    batches = [torch.randint(20, (2, 8)) for _ in range(3)]
    optimizer = make_optimizer(model)
    for k, x in enumerate(batches):
        before_step(optimizer, k)
        model(x, x)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fused_adamw_in_muon_equals_the_plain_update():
    """On CUDA, Muon's AdamW groups run PyTorch's fused kernel (configure_muon(..., 'cuda')); it runs on a CPU too."""
    def muon(fused):
        def make(model):
            optimizer = configure_muon(model, 0.1, 1e-2, (0.9, 0.95), 'cpu')
            for group in optimizer.param_groups:
                group['fused'] = fused
            return optimizer
        return make
    weights = [weights_after_three_steps(muon(fused)) for fused in (False, True)]
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8, vocab_size=20))
    assert all(g['fused'] for g in configure_muon(model, 0.1, 1e-2, (0.9, 0.95), 'cuda').param_groups)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-4)



def test_batches_gathered_in_device_memory_give_the_same_curve(tmp_path, char_data):
    """On CUDA train.py holds small splits in device memory (data_on_device=None) and gathers each batch there; the
    batches, and so every eval, are those read from the memmaps. Forced on here: the CPU is the device."""
    curves = []
    for on_device in (False, True):
        p = run('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path / str(on_device)}',
                '--max_iters=10', '--eval_interval=5', f'--data_on_device={on_device}')
        curves.append(re.findall(r'eval +\d+ \| train [\d.]+ \| val [\d.]+', p.stdout))
    assert len(curves[0]) == 3 and curves[1] == curves[0]


def muon_weights(compiled, steps=3):
    """A tiny model's weights after Muon steps at changing learning rates, Muon's update compiled or not."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50))
    opt = configure_muon(model, 0.1, 1e-2, (0.9, 0.95), 'cpu', compile=compiled)
    g = torch.Generator().manual_seed(1)
    for i in range(steps):
        for group in opt.param_groups:
            group['lr'] = 1e-2 / (i + 1)  # the schedule: a new lr must not need a new graph
        x = torch.randint(50, (4, 16), generator=g)
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_compiled_muon_update_equals_the_eager_one():
    """train.py compiles each matrix shape's whole Muon update (momentum, Newton-Schulz, the weight update; lr and
    weight decay then go in as 0-d tensors) along with the model: the same weights, and one graph per shape for any
    lr."""
    from torch._dynamo.utils import counters
    counters.clear()
    try:
        compiled = muon_weights(compiled=True)
    except Exception as e:  # no C++ compiler for inductor's CPU kernels, say
        pytest.skip(f"torch.compile does not run here: {type(e).__name__}")
    assert counters['stats']['unique_graphs'] == 3  # shapes (32, 96), (32, 32), (32, 128), for 3 learning rates
    torch.testing.assert_close(compiled, muon_weights(compiled=False), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('optim', ['muon', 'adamw'])
def test_a_learning_rate_held_in_a_tensor_steps_as_the_number(optim):
    """cuda_graph=True gives every group one 0-d tensor as its lr (train.py's lr_now), filled before each step, since a
    number would be baked into the captured graph: the steps are those of the numbers the schedule gives."""
    lr_now = torch.tensor(0.0)

    def warmup(held):  # each step another lr
        def set_lr(optimizer, k):
            for group in optimizer.param_groups:
                group['lr'] = lr_now.fill_(1e-2 * (k + 1) / 3) if held else 1e-2 * (k + 1) / 3
        return set_lr
    weights = [weights_after_three_steps(lambda m: OPTIMIZERS[optim](m, 0.1, 1e-2, (0.9, 0.95), 'cpu'), warmup(held))
               for held in (False, True)]
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-4)  # rounding, grown by 3 AdamW steps


@pytest.mark.parametrize('setting, needs', [
    ('--device=cpu', "a CUDA device"),
    ('--nan_policy=skip', "nan_policy='stop' ('skip' decides on the CPU before each optimizer step)"),
    ('--grad_norms=True', "grad_norms=False"),
])
def test_cuda_graph_says_what_it_needs(tmp_path, char_data, setting, needs):
    """On a CPU the whole-step CUDA graph is off by default (cuda_graph=None); asked for, it says what it needs."""
    p = run_here('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--cuda_graph=True', setting)
    assert p.returncode == 1 and p.stderr.startswith("error: cuda_graph=True needs ") and needs in p.stderr


@pytest.mark.parametrize('config, flops, compiled', [
    ([], 6.7e12, False),  # the default config
    (['config/shakespeare_char_fast.py'], 8.2e14, False),
    (['config/train_shakespeare_char.py'], 5.8e15, True),  # nanoGPT's baby GPT
])
def test_compile_by_default_only_where_a_run_wins_it_back(train_defaults, config, flops, compiled):
    """compile=None compiles on CUDA a run of common.COMPILE_FLOPS training FLOPs or more (train.py: FLOPs per token x
    tokens per step x max_iters), and never on the CPU; the FLOPs that train.py's and COMPILE_FLOPS's comments state."""
    s = parse_config(train_defaults, [str(REPO / c) for c in config])
    model = GPT(GPTConfig(**model_config(s, 65)))  # shakespeare_char's 65 characters
    run_flops = model.flops_per_token() * s['gradient_accumulation_steps'] * s['batch_size'] * s['block_size'] \
        * s['max_iters']
    assert run_flops == pytest.approx(flops, rel=0.01)
    assert compile_on(s['compile'], 'cuda', run_flops) is compiled
    assert compile_on(s['compile'], 'cpu', run_flops) is False
    assert compile_on(True, 'cuda', run_flops) is True and compile_on(False, 'cuda', run_flops) is False


def fp8_pair():
    """A tiny model and its fp8_head twin with the same weights, a batch whose first 5 targets are left out (-1)."""
    torch.manual_seed(0)
    cfg = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=64, bias=False)
    plain, fp8 = GPT(GPTConfig(**cfg)), GPT(GPTConfig(**cfg))
    fp8.load_state_dict(plain.state_dict())
    use_float8_head(fp8)
    X, Y = torch.randint(64, (4, 16)), torch.randint(64, (4, 16))
    Y[0, :5] = -1
    return plain, fp8, X, Y


def bf16_step(model, X, Y, scale=1.0):
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', torch.bfloat16):
        logits, loss = model(X, Y)
    (loss * scale).backward()
    return logits, loss.item(), [p.grad.clone() for p in model.parameters()]


def test_fp8_head_gives_the_plain_loss_and_gradients_within_float8s_error():
    """fp8_head (fp8.py: the output layer's products in float8; torch._scaled_mm runs on a CPU too) against the plain
    path, bf16 autocast: the loss within 0.1%, the logits within 5% (e4m3 keeps 3 bits of mantissa; measured: 3.4%),
    every parameter's gradient within 8% (e5m2 keeps 2; measured: 3-5%). The targets left out count in neither."""
    plain, fp8, X, Y = fp8_pair()
    (logits, loss, grads), (logits8, loss8, grads8) = bf16_step(plain, X, Y), bf16_step(fp8, X, Y)
    assert logits8.dtype == torch.bfloat16 and logits8.shape == logits.shape
    assert loss8 == pytest.approx(loss, rel=1e-3)
    assert torch.linalg.norm((logits8 - logits).float()) / torch.linalg.norm(logits.float()) < 0.05
    for (name, _), g, g8 in zip(plain.named_parameters(), grads, grads8):
        assert torch.linalg.norm(g8 - g) / torch.linalg.norm(g) < 0.08, name


def test_fp8_head_evaluates_with_the_plain_layer():
    """Evals (no autograd) see the plain output layer: a val loss does not depend on fp8_head."""
    plain, fp8, X, Y = fp8_pair()
    with torch.no_grad(), torch.autocast('cpu', torch.bfloat16):
        assert torch.equal(plain(X, Y)[1], fp8(X, Y)[1])


def test_fp8_heads_gradient_scale_follows_the_loss_scale():
    """The e5m2 gradient's scale comes from d loss (and the targets' probabilities), so a loss multiplied by 2^16 (as
    float16's GradScaler does) or by 2^-20 gives the same gradients times that factor: nothing overflows to inf or
    flushes to 0."""
    _, fp8, X, Y = fp8_pair()
    _, _, grads = bf16_step(fp8, X, Y)
    for scale in (2.0 ** 16, 2.0 ** -20):
        _, _, scaled = bf16_step(fp8, X, Y, scale)
        for g, s in zip(grads, scaled):
            torch.testing.assert_close(s / scale, g, rtol=1e-3, atol=1e-8)


def test_fp8_head_says_what_it_needs(tmp_path, char_data):
    p = run_here('train.py', *TINY, f'--data_dir={char_data}', f'--out_dir={tmp_path}', '--fp8_head=True')
    m = re.fullmatch(r"error: fp8_head needs n_embd and vocab_size divisible by 16 \(float8 matmuls\), got 32 and "
                     r"(\d+) \(a larger vocab_size pads it: --vocab_size=(\d+)\)", p.stderr.strip())
    assert p.returncode == 1 and m and int(m[2]) % 16 == 0 and 0 < int(m[2]) - int(m[1]) < 16


def test_fp8_head_refuses_a_device_without_float8_matmuls(monkeypatch):
    """An A100 (compute capability 8.0) or a Mac's GPU has no float8 matmuls: fp8_head says so before training starts,
    naming the GPU, instead of failing inside the first step. An H100 (9.0) is taken."""
    model = fp8_pair()[1]
    capability = {'NVIDIA A100-SXM4-80GB': (8, 0), 'NVIDIA H100 80GB HBM3': (9, 0)}
    for name, cc in capability.items():
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: cc)
        monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
        if cc < (8, 9):
            with pytest.raises(ValueError, match=r"NVIDIA A100-SXM4-80GB \(compute capability 8\.0\) lacks"):
                use_float8_head(model, 'cuda')
        else:
            assert use_float8_head(model, 'cuda') is model
    with pytest.raises(ValueError, match="not on mps"):
        use_float8_head(model, 'mps')
