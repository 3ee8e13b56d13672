"""Command-line tools, run as ``python -m jaxpapers.tools.<name>``."""
