# size preset 'medium' for the scaling stage: 6 layers, 6 heads, 384 wide, ~10.7M: nanoGPT's baby GPT
# use after a dataset config: python train.py config/train_shakespeare_char.py config/sizes/medium.py
n_layer = 6
n_head = 6
n_embd = 384
