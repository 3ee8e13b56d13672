"""The occluders FROM pastes onto faces: a folder of real ones, else procedural PDSN-like shapes.

``occluders(config)`` returns the occluder list (for the deterministic occluded test sets) and the
device bank (for on-device occlusion in the train step); ``jaxpapers.lib.occlusion`` does the
pasting, the pattern set and the max-IoU labels.
"""

from __future__ import annotations

import functools

from jaxpapers.lib import occlusion as oc


def occluders(config):
    """(occluder list, device bank) for the config: a folder of real occluders, else procedural."""
    o = config.occlusion
    hw = tuple(config.data.image_size)
    grayscale = bool(config.data.grayscale)
    if o.folder:
        # Read on every call (the train step's trace, each evaluation): the folder is an input.
        occs = oc.load_occluders(o.folder, grayscale)
        return occs, oc.build_bank(occs, hw)
    return _procedural(hw, int(o.seed), int(o.variants), grayscale)


# Cached: a pure function of its arguments, needed by the train step's trace and every evaluation.
@functools.lru_cache(maxsize=4)
def _procedural(hw: tuple[int, int], seed: int, variants: int, grayscale: bool):
    occs = oc.procedural_occluders(seed, variants, hw, grayscale)
    return occs, oc.build_bank(occs, hw)
