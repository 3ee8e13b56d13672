"""jaxpapers: ten research papers reimplemented in JAX/Flax on one shared foundation."""

__version__ = "0.1.0"
