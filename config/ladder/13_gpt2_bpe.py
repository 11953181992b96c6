# 13 GPT-2 BPE tokens instead of characters: tiny shakespeare through tiktoken's gpt2 (Radford et al. 2019).
import os
exec(open(os.path.join(os.path.dirname(__file__), '12_dropout.py')).read())
out_dir = 'out-ladder/13_gpt2_bpe'
dataset = 'shakespeare'
