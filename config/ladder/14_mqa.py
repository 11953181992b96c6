# 14 multi-query attention: one key/value head shared by all four query heads (Shazeer 2019).
import os
exec(open(os.path.join(os.path.dirname(__file__), '13_gpt2_bpe.py')).read())
out_dir = 'out-ladder/14_mqa'
n_kv_head = 1
