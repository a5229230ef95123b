"""One sub-package per model family (image, points, style), and the registry of variants."""
