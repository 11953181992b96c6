# The lowest val loss we found on char-level tiny shakespeare within nanoGPT's time (its baby GPT: best val 1.4654,
# 163 s wall on an H200): config/shakespeare_char_fast.py's recipe (weight decay and EMA included) with 8 blocks
# instead of 6, 512 characters of context (half the sequences per step) and 1250 steps, evaluated every 125 to keep
# the best checkpoint. ~45 s on one H100 with a warm compile cache: see docs/benchmarks.md.
#   python train.py config/shakespeare_char_best.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'shakespeare_char_fast.py')).read())
out_dir = 'out-shakespeare-char-best'
eval_interval = 125
n_layer = 8
batch_size = 32
block_size = 512
max_iters = 1250
lr_decay_iters = 1250
muon_ns = 'jordan'  # Muon's own coefficients, as measured (the fast config's are Turbo-Muon's)
compile = True  # as measured (docs/benchmarks.md): its 2.1e15 training FLOPs are under common.COMPILE_FLOPS
compile_mode = 'reduce-overhead'  # CUDA graphs of the compiled model (the run's own whole-step graph is then off)
compile_eval = False  # the evals run uncompiled: compiling their graph took longer than they do
