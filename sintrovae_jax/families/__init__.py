"""One sub-package per model family (image, points, style): its networks and step."""
