# scaling/s6_8x384: the scaling recipe (_recipe.py) at 8 layers x 384 wide.
import os
n_layer = 8
n_embd = 384
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s6_8x384'
