# 09 + the output projection after attention, back into the residual pathway (Vaswani et al. 2017).
import os
exec(open(os.path.join(os.path.dirname(__file__), '08_residual.py')).read())
out_dir = 'out-ladder/09_attn_proj'
attn_proj = True
