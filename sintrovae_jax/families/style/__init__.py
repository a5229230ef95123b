"""The style-based (ALAE) family: networks, optimiser, progressive schedule, step (VARIANTS.md 1)."""
