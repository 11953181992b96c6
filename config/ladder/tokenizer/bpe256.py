# tokenizer/bpe256: rung 20's body on the plays, bytes: the 256 byte values and no merges (with <|endoftext|>, 257 ids).
#   python data/plays/prepare.py --tokenizer bpe:256 --out_dir data/plays_bpe256
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '20_llama.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/tokenizer/bpe256'
dataset = 'plays_bpe256'
