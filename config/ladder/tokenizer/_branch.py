# The tokenizer branch (issue 25): how much does the tokenizer matter? One body (rung 20's LLaMA-style blocks: 4 x 128,
# context 64 tokens), one text (the 38 plays, 4 of them held out), the same training FLOPs for every rung: only the
# tokenizer changes, and with it the token table and the output layer. `python ladder.py --branch=tokenizer` reads
# these keys (the command line wins). Prepare the datasets first (ladder.py prints the commands).
flops = 2.5e13  # training FLOPs per run (6 N + attention, per token): ~5.2M tokens of bytes (~1.2 epochs of the
# 4.3 MB training plays), ~0.6M of GPT-2's tokens (~0.5 epochs): no rung runs far past one epoch
seeds = 3
curves = 'tokenizer/bpe256,tokenizer/bpe1024,tokenizer/bpe4096,tokenizer/gpt2'
