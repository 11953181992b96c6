# 16 feed-forward hidden layer 2x instead of 4x the width: half the FFN parameters.
import os
exec(open(os.path.join(os.path.dirname(__file__), '15_gqa.py')).read())
out_dir = 'out-ladder/16_ffn_2x'
ffn_mult = 2.0
