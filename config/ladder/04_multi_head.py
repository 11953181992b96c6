# 04 four attention heads of 32 dims instead of one of 128 (multi-head attention, Vaswani et al. 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '03_attention.py')).read())
out_dir = 'out-ladder/04_multi_head'
n_head = 4
