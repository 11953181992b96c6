# scaling/s4_5x192: the scaling recipe (_recipe.py) at 5 layers x 192 wide.
import os
n_layer = 5
n_embd = 192
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s4_5x192'
