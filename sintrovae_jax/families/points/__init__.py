"""The 3D point-cloud family: PointNet encoder and MLP decoder (VARIANTS.md 3)."""
