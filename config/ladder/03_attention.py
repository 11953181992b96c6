# 03 single-head self-attention instead of the average, with learned positions (attention alone cannot tell order) (Vaswani et al. 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '02_mean.py')).read())
out_dir = 'out-ladder/03_attention'
mixer = 'attn'
pos_emb = 'learned'
