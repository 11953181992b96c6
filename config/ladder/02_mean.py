# 02 mean context: one layer in which each position averages itself and all before it, a bag of words.
import os
exec(open(os.path.join(os.path.dirname(__file__), '01_bigram.py')).read())
out_dir = 'out-ladder/02_mean'
n_layer = 1
mixer = 'mean'
