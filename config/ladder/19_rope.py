# 19 rotary position embeddings in attention instead of a learned position table (Su et al. 2021; LLaMA).
import os
exec(open(os.path.join(os.path.dirname(__file__), '18_swiglu.py')).read())
out_dir = 'out-ladder/19_rope'
pos_emb = 'rope'
