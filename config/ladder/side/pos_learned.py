# side branch, learned positions: 11_pre_ln as it is (a position table), the reference for pos_sinusoidal and pos_rope.
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '11_pre_ln.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/side/pos_learned'
pos_emb = 'learned'
