"""Algorithms shared by several papers (attacks, losses, ...)."""
