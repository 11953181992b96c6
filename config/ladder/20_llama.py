# 20 the all-in LLaMA-style model: + GPT-2 init and a warmup + cosine learning-rate schedule (Radford et al. 2019; Loshchilov & Hutter 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '19_rope.py')).read())
out_dir = 'out-ladder/20_llama'
init = 'gpt2'
decay_lr = True
warmup_iters = 100
min_lr = 1e-4
