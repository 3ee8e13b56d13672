"""Trained teachers shipped with the method (see README.md here); data only, nothing to import."""
