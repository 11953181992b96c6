# scaling/s2_3x96: the scaling recipe (_recipe.py) at 3 layers x 96 wide.
import os
n_layer = 3
n_embd = 96
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s2_3x96'
