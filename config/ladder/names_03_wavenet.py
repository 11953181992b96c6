# names 03 WaveNet: three layers, layer i fusing positions 2**i apart, so the last one sees 8 letters, each with
# a tanh hidden layer and LayerNorm standing in for makemore's BatchNorm (van den Oord et al. 2016; as in makemore).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'names_02_mlp.py')).read())
out_dir = 'out-ladder/names_03_wavenet'
n_layer = 3
mixer = 'wavenet'
norm = 'layernorm'
norm_pos = 'post'
