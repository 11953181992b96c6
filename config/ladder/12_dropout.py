# 12 + dropout 0.2 on attention, sublayer outputs and embeddings (Srivastava et al. 2014).
import os
exec(open(os.path.join(os.path.dirname(__file__), '11_pre_ln.py')).read())
out_dir = 'out-ladder/12_dropout'
dropout = 0.2
