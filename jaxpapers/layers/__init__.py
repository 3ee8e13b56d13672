"""Network blocks used by two or more papers."""
