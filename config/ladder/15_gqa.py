# 15 grouped-query attention: two key/value heads, each serving two query heads (Ainslie et al. 2023).
import os
exec(open(os.path.join(os.path.dirname(__file__), '14_mqa.py')).read())
out_dir = 'out-ladder/15_gqa'
n_kv_head = 2
