# Fine-tune OpenAI's GPT-2 on tiny shakespeare in GPT-2 BPE (python data/shakespeare/prepare.py), as nanoGPT's
# config/finetune_shakespeare.py: the largest GPT-2 (1.5B), 20 iterations of 32 x 1024 tokens at a constant small
# learning rate. The weights come through transformers from the Hugging Face hub; offline, --init_from=PATH names a
# local folder that holds them (save_pretrained's). --init_from=gpt2 is the 124M model, for a small GPU.
# Checkpoints hold AdamW's state too: ~18 GB each for gpt2-xl (train.py checks the disk first).
out_dir = 'out-shakespeare-finetune'
eval_interval = 5
eval_iters = 40
log_interval = 1
wandb_log = False  # feel free to turn on
wandb_project = 'shakespeare'

dataset = 'shakespeare'
init_from = 'gpt2-xl'  # the largest GPT-2

# 1 batch_size x 32 gradient_accumulation_steps x 1024 tokens = 32,768 tokens per iteration;
# the 301,966 training tokens are ~9.2 iterations an epoch
batch_size = 1
gradient_accumulation_steps = 32
block_size = 1024  # GPT-2's whole context (smaller crops its position table)
max_iters = 20

# fine-tune at a constant learning rate
learning_rate = 3e-5
optim = 'adamw'  # nanoGPT's (train.py's default is Muon)
decay_lr = False
