"""The image and 2D family: residual image networks and MLPs (bootstrap is a step variant)."""
