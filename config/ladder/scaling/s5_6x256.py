# scaling/s5_6x256: the scaling recipe (_recipe.py) at 6 layers x 256 wide.
import os
n_layer = 6
n_embd = 256
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s5_6x256'
