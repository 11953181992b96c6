# names 01 bigram: the next letter of a name from the current one, a lookup table (makemore, Karpathy 2022).
# The names rungs train on data/names (one name per line, char level); python data/names/prepare.py first.
out_dir = 'out-ladder/names_01_bigram'
dataset = 'names'
batch_size = 32
block_size = 16
max_iters = 2000
eval_interval = 250
eval_iters = 20  # batches per split per eval: 10k tokens
learning_rate = 1e-2
optim = 'adamw'  # every names rung, as the ladder was measured (train.py's default is Muon)
decay_lr = False
weight_decay = 0.0
dropout = 0.0
bias = True
n_layer = 0
n_head = 1
n_embd = 64
mixer = 'none'
ffn = 'none'
norm = 'none'
residual = False
attn_proj = False
pos_emb = 'none'
tie_weights = False
init = 'default'
