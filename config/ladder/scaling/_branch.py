# The scaling branch (issue 25): does loss fall predictably with size? Six sizes of one recipe (_recipe.py), width and
# depth together, 137x in non-embedding parameters, on the plays' characters (4 plays held out), each for the same
# tokens. `python ladder.py --branch=scaling` reads these keys (the command line wins); --tokens sets other budgets.
tokens = 4_096_000  # ~1 epoch of the 4.3M training characters: no size trains past what the data holds
seeds = 3
curves = 'scaling/s1_2x64,scaling/s3_4x128,scaling/s5_6x256,scaling/s6_8x384'
