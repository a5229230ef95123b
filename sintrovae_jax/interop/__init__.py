"""Reading the authors' PyTorch files: the restricted unpickler and the checkpoint importers."""
