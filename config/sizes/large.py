# size preset 'large' for the scaling stage: 8 layers, 8 heads, 512 wide, ~25M
# use after a dataset config: python train.py config/train_shakespeare_char.py config/sizes/large.py
n_layer = 8
n_head = 8
n_embd = 512
