# size preset 'tiny' for the scaling stage: 2 layers, 4 heads, 128 wide, ~0.4M: the default CPU model
# use after a dataset config: python train.py config/train_shakespeare_char.py config/sizes/tiny.py
n_layer = 2
n_head = 4
n_embd = 128
