"""Input pipelines: ``load`` a split as arrays, ``Loader`` batches it per step onto the mesh.

Two pipelines read the same example order (``order.py``: a pure function of seed and step, so a
resumed run continues exactly):

* ``data.pipeline="memory"`` (default): `Loader` reads batches of a source (arrays in memory,
  or a random-access source) on one background thread;
* ``data.pipeline="stream"``: `StreamLoader` decodes and augments whole batches in ``data.workers``
  grain worker processes (``stream.py``: image folders, TFDS/array_record, face RecordIO sets,
  in-memory annotations joined with decoded images, video key-frame clips with boxes), for the
  paper presets whose data sets do not fit in memory.

Both place ``prefetch`` batches ahead on the mesh; ``make_loader(source, config, mesh)`` picks one.
Names are imported on first use, so grain's worker processes do not import TFDS.
"""

_LOADER = ("Loader", "StreamLoader", "load", "make_loader", "open_source", "read_source")


def __getattr__(name: str):
    if name in _LOADER:
        from jaxpapers.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'jaxpapers.data' has no attribute {name!r}")
