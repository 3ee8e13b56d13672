"""jaxpapers: ten research papers reimplemented in JAX/Flax on one shared foundation.

``jaxpapers.load(workdir)`` rebuilds a finished run (``jaxpapers.runs.load_run``): its
``.config``, ``.method`` and ``.state``, plus ``.sampler`` (GANs) or ``.predict(images)``
(classifiers). It is imported on first use, so ``import jaxpapers`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from jaxpapers.runs import load_run

        return load_run
    raise AttributeError(f"module 'jaxpapers' has no attribute {name!r}")
