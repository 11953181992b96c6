# 08 + residual connections around each sublayer (He et al. 2015).
import os
exec(open(os.path.join(os.path.dirname(__file__), '07_four_blocks.py')).read())
out_dir = 'out-ladder/08_residual'
residual = True
