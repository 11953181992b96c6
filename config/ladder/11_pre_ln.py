# 11 LayerNorm before each sublayer instead: pre-LN, as GPT-2 (Xiong et al. 2020).
import os
exec(open(os.path.join(os.path.dirname(__file__), '10_post_ln.py')).read())
out_dir = 'out-ladder/11_pre_ln'
norm_pos = 'pre'
