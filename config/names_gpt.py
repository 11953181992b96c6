# A small char-level GPT on first names, one a line (makemore's task): python data/names/prepare.py first.
# makemore's transformer: 4 layers, 4 heads, 64 wide, a 16-letter context (names are at most 15 letters).
# val loss ~2.14 after 3000 iters (1 min on 2 CPU cores); python sample.py --out_dir=out-names prints one name a line.
out_dir = 'out-names'
dataset = 'names'
eval_interval = 250
eval_iters = 50
log_interval = 50

batch_size = 32
block_size = 16

n_layer = 4
n_head = 4
n_embd = 64
dropout = 0.0

learning_rate = 1e-3
optim = 'adamw'  # makemore's (train.py's default is Muon)
max_iters = 3000
lr_decay_iters = 3000
min_lr = 1e-4
warmup_iters = 100
weight_decay = 0.01
