# The fastest route we found to val <= 1.47 on char-level tiny shakespeare (nanoGPT's "baby GPT" reaches 1.4654 at
# iter 1750 of 5000): the same 6 x 384 model and data, LLaMA-style parts, Muon (Turbo-Muon's Newton-Schulz) with
# strong weight decay, and an eval of an average of the weights (EMA), after 700 steps of 64 x 256 characters.
#   python data/shakespeare_char/prepare.py && python train.py config/shakespeare_char_fast.py
# One H100, bf16: docs/benchmarks.md has the figures. Its 8.2e14 training FLOPs run uncompiled (compiling cost ~25 s
# cold and saved ~10 s) and as one CUDA graph a step (train.py's compile and cuda_graph keys, left at None).
out_dir = 'out-shakespeare-char-fast'
eval_interval = 700  # one eval, at the end
eval_at_start = False
eval_iters = 50  # 50 x 64 x 256 characters per split: each eval covers the 111K-character val split ~7 times
log_interval = 100

dataset = 'shakespeare_char'
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
pos_emb = 'rope'  # rotary positions (Su et al. 2021)
norm = 'rmsnorm'  # (Zhang & Sennrich 2019)
ffn = 'swiglu'  # (Shazeer 2020)
qk_norm = True  # (Dehghani et al. 2023)

optim = 'muon'  # Muon for the matrices inside the blocks, AdamW for the rest (Jordan 2024)
muon_ns = 'turbo'  # AOL's rescaling, then Polar Express's last 4 Newton-Schulz steps: one fewer (Boissin et al. 2025):
# 700 steps reach val ~1.45 in 17.0 s from launch warm (one H100, 2026-12-07; in an earlier call 19.1 s against Polar
# Express's 5 steps' 19.6 s; docs/benchmarks.md)
learning_rate = 6e-3
max_iters = 700
lr_decay_iters = 700
warmup_iters = 100
min_lr = 1e-4
beta2 = 0.99
weight_decay = 4.0  # x learning_rate: each step shrinks the weights by 2.4% at the peak (decoupled, Loshchilov &
# Hutter 2019); without it the model overfits the 1M characters within ~1000 steps
ema_decay = 0.98  # evals, best.pt and samples use this average of the weights (Polyak & Juditsky 1992)
