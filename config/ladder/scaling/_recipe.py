# The scaling branch's one recipe: rung 20's LLaMA-style parts (RMSNorm, SwiGLU, RoPE, GPT-2 init, warmup + cosine),
# multi-head attention with heads of 32 (n_head = n_embd / 32), context 256, 16 sequences a step, no dropout (about one
# epoch: nothing to regularise), AdamW with lr = 2e-3 x 128 / n_embd (the rule: inversely with width, as muP's
# hidden-layer rate; 4e-3 at 64 wide, 6.7e-4 at 384). Each size sets n_layer and n_embd, then runs this file's end.
dataset = 'plays'
batch_size = 16
block_size = 256
eval_iters = 20  # 20 x 16 x 256 = 82K characters per split per eval
optim = 'adamw'
weight_decay = 0.1
beta2 = 0.95
decay_lr = True
warmup_iters = 100
min_lr = 1e-5
dropout = 0.0
bias = False
norm = 'rmsnorm'
ffn = 'swiglu'
pos_emb = 'rope'
init = 'gpt2'
tie_weights = False
n_head = n_embd // 32
learning_rate = 2e-3 * 128 / n_embd
