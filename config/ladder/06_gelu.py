# 06 GELU instead of ReLU in the feed-forward layer, as GPT-2 (Hendrycks & Gimpel 2016).
import os
exec(open(os.path.join(os.path.dirname(__file__), '05_ffn_relu.py')).read())
out_dir = 'out-ladder/06_gelu'
ffn = 'gelu'
