# nanoGPT's "baby GPT" on char-level tiny shakespeare, for one GPU: 6 layers, 6 heads, 384 wide,
# block 256 (10.7M params). nanoGPT reports val loss ~1.47 after 5000 iters.
out_dir = 'out-shakespeare-char'
eval_interval = 250
eval_iters = 200
log_interval = 10

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # small networks can take a larger learning rate
optim = 'adamw'  # nanoGPT's (train.py's default is Muon)
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99  # a little larger than usual: few tokens per iteration
warmup_iters = 100
