# size preset 'xl' for the scaling stage: 12 layers, 12 heads, 768 wide, ~85M: GPT-2 small's body (124M with its 50257-token embeddings)
# use after a dataset config: python train.py config/train_shakespeare_char.py config/sizes/xl.py
n_layer = 12
n_head = 12
n_embd = 768
