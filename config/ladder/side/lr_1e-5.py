# side branch, learning rate 1e-5 (constant) instead of 11_pre_ln's 1e-3: a hundred times smaller steps.
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/lr_1e-5'
learning_rate = 1e-5
