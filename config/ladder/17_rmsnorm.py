# 17 RMSNorm instead of LayerNorm: no centring, no bias (Zhang & Sennrich 2019; LLaMA).
import os
exec(open(os.path.join(os.path.dirname(__file__), '16_ffn_2x.py')).read())
out_dir = 'out-ladder/17_rmsnorm'
norm = 'rmsnorm'
