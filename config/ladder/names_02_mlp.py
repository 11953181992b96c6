# names 02 MLP language model: concatenate the last 3 letters' embeddings, project, then a tanh hidden layer
# (Bengio et al. 2003; as in makemore).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'names_01_bigram.py')).read())
out_dir = 'out-ladder/names_02_mlp'
n_layer = 1
mixer = 'window'
window = 3
ffn = 'tanh'
