# scaling/s1_2x64: the scaling recipe (_recipe.py) at 2 layers x 64 wide.
import os
n_layer = 2
n_embd = 64
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s1_2x64'
