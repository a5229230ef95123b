"""The run: config checks, workdir and checkpoints, the loop, the sample/fid/ood modes."""
