# side branch, width at equal parameters: 11_pre_ln with 2 layers of width 256 (1,623,808 params; deep: 1,599,872).
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/wide_2x256'
n_layer = 2
n_embd = 256
