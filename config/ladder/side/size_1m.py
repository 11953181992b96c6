# side branch, ~1M parameters: 11_pre_ln's 4 layers at width 144 instead of 128 (1,024,560 params; size_100k: 101,860).
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/size_1m'
n_embd = 144  # 4 heads of 36
