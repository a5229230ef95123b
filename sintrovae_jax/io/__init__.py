"""Files and buckets (one filesystem layer), the hosts of a run, pictures written out."""
