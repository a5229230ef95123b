"""FID/KID with Inception, likelihood and OOD scores, 2D and 3D metrics."""
