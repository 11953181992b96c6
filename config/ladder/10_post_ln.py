# 10 + LayerNorm after each residual add: post-LN, the original transformer (Vaswani et al. 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '09_attn_proj.py')).read())
out_dir = 'out-ladder/10_post_ln'
norm = 'layernorm'
norm_pos = 'post'
