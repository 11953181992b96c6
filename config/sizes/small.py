# size preset 'small' for the scaling stage: 4 layers, 4 heads, 256 wide, ~3M: a quick GPU or a patient CPU run
# use after a dataset config: python train.py config/train_shakespeare_char.py config/sizes/small.py
n_layer = 4
n_head = 4
n_embd = 256
