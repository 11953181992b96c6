# side branch, ~100K parameters: 11_pre_ln's 4 layers at width 44 instead of 128 (101,860 params, 11_pre_ln 812,416).
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/size_100k'
n_embd = 44  # 4 heads of 11
