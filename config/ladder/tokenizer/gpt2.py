# tokenizer/gpt2: rung 20's body on the plays, GPT-2's BPE (50,257 tokens, trained by OpenAI on WebText).
#   python data/plays/prepare.py --tokenizer gpt2 --out_dir data/plays_gpt2
import os
__file__ = os.path.join(os.path.dirname(__file__), '..', '20_llama.py')  # the rungs find their parents beside it
exec(open(__file__).read())
out_dir = 'out-ladder/tokenizer/gpt2'
dataset = 'plays_gpt2'
