# 05 + a feed-forward layer after attention: per-position computation, ReLU, 4x wide (Vaswani et al. 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '04_multi_head.py')).read())
out_dir = 'out-ladder/05_ffn_relu'
ffn = 'relu'
