# 18 SwiGLU feed-forward instead of GELU, hidden 2/3 as wide to keep the parameters (Shazeer 2020; LLaMA).
import os
exec(open(os.path.join(os.path.dirname(__file__), '17_rmsnorm.py')).read())
out_dir = 'out-ladder/18_swiglu'
ffn = 'swiglu'
