# tokenizer/bpe4096: rung 20's body on the plays, a byte-level BPE of 4096 tokens trained on the training plays
# (data/common.py's train_bpe).
#   python data/plays/prepare.py --tokenizer bpe:4096 --out_dir data/plays_bpe4096
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '20_llama.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/tokenizer/bpe4096'
dataset = 'plays_bpe4096'
