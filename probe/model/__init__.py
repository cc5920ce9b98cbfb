"""The character models and what works on their weights: the stacked RNN, checkpoints, sampling, n-gram baselines."""
