"""
Many processes (torchrun): what a run of several processes needs beyond one, in one place.

- the batch rule: how an optimizer step's sequences divide among the processes (split_batch);
- FSDP2 (parallel='fsdp'): each block's weights sharded over the processes (shard), and the whole state dicts that a
  checkpoint holds, gathered from the shards and put back (model_state, optimizer_state, load_optimizer_state);
- FSDP2's shards (DTensors) as whole tensors or local ones, for Muon, gradient norms and the weight average;
- flags every process agrees on (agree), so that all of them stop, skip or save at the same step.
With one process every function here is the plain one-process call. DDP itself is torch's DistributedDataParallel,
wrapped in train.py.
"""
import torch


def is_dtensor(t):
    """An FSDP2 shard: a torch.distributed.tensor.DTensor (not imported here: a slow import that only FSDP needs)."""
    return hasattr(t, 'device_mesh')


def full_tensor(t):
    """The whole tensor of an FSDP2 shard (gathering it is a collective: every process calls this), else t itself."""
    return t.full_tensor() if is_dtensor(t) else t


def shard_like(t, p):
    """A whole tensor t as p is held: p's own shard of it when p is an FSDP2 shard (every process has the same t, so
    each keeps its part: no communication), else t itself."""
    if not is_dtensor(p):
        return t
    from torch.distributed.tensor import distribute_tensor
    return distribute_tensor(t, p.device_mesh, p.placements, src_data_rank=None)


def local(t):
    """This process's part of a tensor, detached: its own shard of an FSDP2 parameter, else the tensor itself."""
    return t.detach().to_local() if is_dtensor(t) else t.detach()


def split_batch(accum, batch, n):
    """The batch rule: an optimizer step takes accum x batch sequences (the config's), whatever the number of
    processes n. Each process takes 1/n of them, in micro-batches of at most batch sequences (the largest size that
    divides its share). Returns (micro-steps, micro-batch) per process; None if the sequences do not divide by n."""
    share, rest = divmod(accum * batch, n)
    if rest:
        return None
    micro = max(b for b in range(1, min(batch, share) + 1) if share % b == 0)
    return share // micro, micro


def agree(*values, device):
    """Integers every process agrees on: the maximum over all processes of each value, read on the CPU. Under
    torchrun a collective call: every process makes it at the same step."""
    flags = torch.stack([torch.as_tensor(v, device=device).long().reshape(()) for v in values])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return flags.tolist()


# ----------------------------------------------------------------------------- FSDP2
def shard(model, device_type, world_size, dtype):
    """FSDP2 (torch.distributed.fsdp.fully_shard): each block, then the rest (embeddings, final norm, output layer),
    split over the processes; a block's weights are gathered just before its forward and backward, and freed after.
    bfloat16 / float16: the gathered weights in that dtype, gradients reduced in float32 (MixedPrecisionPolicy)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mesh = init_device_mesh(device_type, (world_size,))
    mp = MixedPrecisionPolicy() if dtype == 'float32' else \
        MixedPrecisionPolicy(param_dtype=getattr(torch, dtype), reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    return fully_shard(model, mesh=mesh, mp_policy=mp)  # in place: the same GPT, its parameters now DTensor shards


def full_options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, **kwargs)


def model_state(model, fsdp):
    """The whole model's state_dict. FSDP: gathered from every process's shards (a collective) onto rank 0's CPU
    (the others get {})."""
    if not fsdp:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    state = get_model_state_dict(model, options=full_options(cpu_offload=True))
    if state and model.config.tie_weights:  # one tensor under both names, as state_dict() has it: saved once
        state['lm_head.weight'] = state['wte.weight']
    return state


def optimizer_state(model, optimizer, fsdp):
    """optimizer.state_dict(), as one process writes it. FSDP: gathered like model_state."""
    if not fsdp:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return by_position(get_optimizer_state_dict(model, optimizer, options=full_options(cpu_offload=True)))


def load_optimizer_state(model, optimizer, state, fsdp):
    """optimizer.load_state_dict of any checkpoint (1 process, DDP, FSDP). FSDP: each process keeps its shards of
    the whole state, which every process has read (a collective). The groups keep this run's keys for how to compute
    a step (fused, capturable; Muon's ns), not the writer's (a GPU run's fused AdamW): torch places each step count by
    fused and capturable."""
    own = [{k: g[k] for k in ('fused', 'capturable', 'ns') if k in g} for g in optimizer.param_groups]
    state = {**state, 'param_groups': [{**g, **keys} for g, keys in zip(state['param_groups'], own)]}
    if not fsdp:
        return optimizer.load_state_dict(state)
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    set_optimizer_state_dict(model, optimizer, by_name(state, model, optimizer), options=full_options())


def by_position(state):
    """An optimizer state_dict keyed by parameter names (torch.distributed.checkpoint's) keyed by position instead,
    as optimizer.state_dict() writes it: a checkpoint is the same whoever wrote it."""
    if not state:
        return state
    index = {name: i for i, name in enumerate(n for g in state['param_groups'] for n in g['params'])}
    return {'state': {index[n]: v for n, v in state['state'].items()},
            'param_groups': [{**g, 'params': [index[n] for n in g['params']]} for g in state['param_groups']]}


def by_name(state, model, optimizer):
    """by_position's inverse, for this optimizer: position i is the i-th parameter of its param_groups."""
    names = {p: n for n, p in model.named_parameters()}
    order = [names[p] for g in optimizer.param_groups for p in g['params']]
    return {'state': {order[i]: v for i, v in state['state'].items()},
            'param_groups': [{**g, 'params': [order[i] for i in g['params']]} for g in state['param_groups']]}
