"""The identity network used by the identity/perceptual losses and the identity metric.

UniFaceGAN's identity supervision needs a face-recognition network; none can be downloaded, so
we use the suite's own (``jaxpapers.lib.face_identity``: a small IR-ResNet + ArcFace trained on
the ORL faces in seconds), trained once per setting and cached on disk. It is frozen: ``prepare``
loads it on the host, ``init_state`` puts it into the state and the step reads it from there.
"""

from __future__ import annotations

import os

from jaxpapers.data import faces
from jaxpapers.lib import face_identity


def enabled(config) -> bool:
    return bool(config.loss.identity > 0 or config.loss.perceptual > 0)


def model_dir(config) -> str:
    c = config.identity
    root = c.dir or os.path.join(os.path.expanduser("~"), ".cache", "jaxpapers", "unifacegan")
    return os.path.join(root, f"identity_orl{c.size}_s{c.steps}_seed{c.seed}")


def load(config) -> face_identity.IdentityModel:
    """The trained identity model for ``config.identity`` (loaded, or trained and saved)."""
    c = config.identity
    path = faces.resolve_dir(c.path, key="identity.path")  # data.path, env root or Olivetti
    images, labels = face_identity.orl_faces(path, (c.size, c.size))
    return face_identity.load_or_train(
        model_dir(config), images, labels, size=(c.size, c.size), steps=c.steps, seed=c.seed
    )
