# 07 four stacked blocks, still without residual connections or norms: deeper, and hard to optimise.
import os
exec(open(os.path.join(os.path.dirname(__file__), '06_gelu.py')).read())
out_dir = 'out-ladder/07_four_blocks'
n_layer = 4
