"""jaxpapers: ten research papers reimplemented in JAX/Flax on one shared foundation.

``jaxpapers.load(workdir)`` rebuilds a finished run (``jaxpapers.runs.load``): its ``.config``,
``.method`` and ``.state``, plus what its kind offers: ``.predict(images)`` (classifiers),
``.sampler`` (GANs), ``.embed``/``.verify``/``.identify`` (face recognition, re-ID),
``.infer(...)`` (face-video generators, the scene-graph predictor), ``.tables``/``.arrays``
(analyses) and ``.defended_predict`` (the hedge defense). It is imported on first use, so
``import jaxpapers`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from jaxpapers.runs import load

        return load
    raise AttributeError(f"module 'jaxpapers' has no attribute {name!r}")
