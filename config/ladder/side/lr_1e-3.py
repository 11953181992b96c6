# side branch, learning rate 1e-3 (constant): 11_pre_ln as it is, the reference for lr_1e-4 and lr_1e-5.
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/lr_1e-3'
learning_rate = 1e-3
