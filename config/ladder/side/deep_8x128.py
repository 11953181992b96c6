# side branch, depth at equal parameters: 11_pre_ln with 8 layers of width 128 (1,599,872 params; wide: 1,623,808).
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/deep_8x128'
n_layer = 8
n_embd = 128
