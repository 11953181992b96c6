# TinyStories with GPT-2 BPE (Eldan & Li 2023): nanoGPT's baby GPT shape, 6 layers, 6 heads, 384 wide, block 256,
# dropout 0.2 (29.9M params, 19.3M of them the token embedding), for one GPU.
# python data/tinystories/prepare.py first (or --source FILES offline).
# Writes to out-tinystories/; `python sample.py --start "One day" --stop_at_eot` samples from the latest out*/.
out_dir = 'out-tinystories'
eval_interval = 250
eval_iters = 20  # 20 batches of 64 x 256 tokens: 328k tokens per split
log_interval = 10

dataset = 'tinystories'
vocab_size = 50304  # GPT-2's 50257 padded to a multiple of 64
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 3e-4
optim = 'adamw'  # nanoGPT's (train.py's default is Muon)
max_iters = 5000
lr_decay_iters = 5000
min_lr = 3e-5
warmup_iters = 200
beta2 = 0.99
