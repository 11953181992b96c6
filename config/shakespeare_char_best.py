# The lowest val loss we found on char-level tiny shakespeare within nanoGPT's time (its baby GPT: best val 1.4654,
# 163 s wall on an H200): config/shakespeare_char_fast.py's model with twice the context (512 characters, half the
# sequences per step) and a longer schedule, evaluated often to keep the best checkpoint. More steps or a larger model
# overfit the 1M characters sooner: see docs/benchmarks.md.
#   python train.py config/shakespeare_char_best.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'shakespeare_char_fast.py')).read())
out_dir = 'out-shakespeare-char-best'
eval_interval = 125
batch_size = 32
block_size = 512
max_iters = 1250
lr_decay_iters = 1250
