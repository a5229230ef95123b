"""The image and 2D family: residual image networks and MLPs (the bootstrap option is a step variant)."""
