# Tiny shakespeare with GPT-2 BPE (python data/shakespeare/prepare.py): nanoGPT's baby GPT, 6 layers, 6 heads,
# 384 wide, block 256 (29.9M params, 19.3M of them the token embedding), for one GPU. 302k training tokens are
# ~18 iterations an epoch, so it overfits soon: val 4.70 after these 500 iters (17 s on one H200); with a
# 1500-iteration schedule val is best at iter 400 (4.77) and then rises to 5.6 while train falls to 1.4.
out_dir = 'out-shakespeare'
eval_interval = 100
eval_iters = 50
log_interval = 10

dataset = 'shakespeare'
vocab_size = 50304  # GPT-2's 50257 padded to a multiple of 64
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 6e-4
optim = 'adamw'  # nanoGPT's (train.py's default is Muon)
max_iters = 500
lr_decay_iters = 500
min_lr = 6e-5
warmup_iters = 100
beta2 = 0.99
