"""Input pipelines (tf.data and NumPy), image and point files, toy 2D sets, data kinds."""
