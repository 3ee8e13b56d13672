"""Input pipelines: ``load`` a split as arrays, ``Loader`` batches it per step onto the mesh."""

from jaxpapers.data.loader import Loader, load, read_source  # noqa: F401
