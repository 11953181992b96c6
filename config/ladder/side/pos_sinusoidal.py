# side branch, fixed sinusoidal positions added to the embeddings instead of 11_pre_ln's learned table (Vaswani 2017).
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/pos_sinusoidal'
pos_emb = 'sinusoidal'
