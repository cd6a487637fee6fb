"""Studies that run the train stage many times: the hyperparameter sweep and the seed study."""
