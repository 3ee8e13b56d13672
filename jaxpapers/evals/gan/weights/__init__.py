"""Weights trained by this suite (see README.md here); data only, nothing to import."""
