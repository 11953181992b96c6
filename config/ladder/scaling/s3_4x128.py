# scaling/s3_4x128: the scaling recipe (_recipe.py) at 4 layers x 128 wide.
import os
n_layer = 4
n_embd = 128
exec(open(os.path.join(os.path.dirname(__file__), '_recipe.py')).read())
out_dir = 'out-ladder/scaling/s3_4x128'
