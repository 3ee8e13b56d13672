"""The identity network used by the identity/perceptual losses and the identity metric.

UniFaceGAN's identity supervision needs a face-recognition network; none can be downloaded, so
we use the suite's own (``jaxpapers.lib.face_identity``: a small IR-ResNet + ArcFace trained on
the ORL faces in seconds), trained once per setting and cached on disk. It is frozen: it enters
the jitted step as a closed-over constant (its arrays are concrete when the step is traced).
"""

from __future__ import annotations

import os

import jax

from jaxpapers.data import faces
from jaxpapers.lib import face_identity

_CACHE: dict = {}


def enabled(config) -> bool:
    return bool(config.loss.identity > 0 or config.loss.perceptual > 0)


def model_dir(config) -> str:
    c = config.identity
    root = c.dir or os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers", "unifacegan")
    return os.path.join(root, f"identity_orl{c.size}_s{c.steps}_seed{c.seed}")


def get(config) -> face_identity.IdentityModel:
    """The trained identity model for ``config.identity`` (loaded, or trained and saved)."""
    c = config.identity
    key = (model_dir(config), c.path)
    if key not in _CACHE:
        path = faces.resolve_dir(c.path, key="identity.path")
        # Concrete evaluation even when called while a jitted step is being traced.
        with jax.ensure_compile_time_eval():
            images, labels = face_identity.orl_faces(path, (c.size, c.size))
            _CACHE[key] = face_identity.load_or_train(
                model_dir(config),
                images,
                labels,
                size=(c.size, c.size),
                steps=c.steps,
                seed=c.seed,
            )
    return _CACHE[key]
