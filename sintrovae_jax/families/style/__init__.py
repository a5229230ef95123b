"""The style-based (ALAE) family: networks, optimiser, progressive schedule and step (VARIANTS.md 1)."""
