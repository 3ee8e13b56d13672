"""Finished runs: rebuild one from its workdir (config, method, restored state).

``load_run(workdir)`` is the one place that turns a directory written by ``jaxpapers.main`` back
into a config, its method and the trained state; the evaluation tools and ``jaxpapers.load``
use it. ``Run`` adds the ready callable of the method's kind:

    run = jaxpapers.load("runs/rat_smoke")
    logits = run.predict(images)                 # classifiers (``logits_fn`` hook)
    images = jaxpapers.load("runs/stylegan2_dgl_smoke").sampler(jax.random.key(0), 16)  # GANs
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpapers import batching, checkpoint, methods, parallel, trainer


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was made with (its ``config.json``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: the workdir must be a run written by python -m jaxpapers.main."
        )
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


@dataclasses.dataclass
class Run:
    """A restored run.

    Attributes:
      workdir: the run's directory.
      config: its config (``config.json``, or the one given to ``load_run``).
      method: the method module (``jaxpapers.methods.get``).
      state: the restored train state (None for analysis methods, which keep no state).
      step: the restored step (None for analysis methods).
    """

    workdir: str
    config: ml_collections.ConfigDict
    method: ModuleType
    state: Any
    step: int | None

    def _hook(self, name: str, what: str) -> Callable:
        fn = methods.hook(self.method, name)
        if fn is None:
            raise AttributeError(
                f"Method {self.config.method!r} has no {name} hook; it is not {what}."
            )
        return fn

    @property
    def sampler(self) -> Callable[[jax.Array, int], np.ndarray]:
        """GANs: ``sampler(key, n) -> n images in [-1, 1]`` of the default (student) generator."""
        return self.make_sampler()

    def make_sampler(self, role: str | None = None, **kwargs) -> Callable:
        """GANs: the ``gan_sampler`` of ``role`` (the method's default when None)."""
        gan_sampler = self._hook("gan_sampler", "a GAN")
        if role is not None:
            kwargs["role"] = role
        return gan_sampler(self.state, self.config, **kwargs)

    @property
    def logits_fn(self) -> Callable[[jax.Array], jax.Array]:
        """Classifiers: the traceable ``images in [0, 1] -> logits`` (e.g. for attacks)."""
        return self._hook("logits_fn", "a classifier")(self.state, self.config)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Classifiers: logits (N, K) of images (N, H, W, C), uint8 or float in [0, 1]."""
        images = np.asarray(images)
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        fn = jax.jit(self.logits_fn)
        return batching.map_batches(
            lambda x: fn(jnp.asarray(x, jnp.float32)), images, batch_size=batch_size
        )


def load_run(
    workdir: str,
    step: int | None = None,
    config: ml_collections.ConfigDict | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Run:
    """Rebuilds the run in ``workdir``: config, method and the state at ``step`` (latest if None).

    Args:
      workdir: a directory written by ``python -m jaxpapers.main`` (holding ``config.json`` and,
        for train methods, ``checkpoints/``); a run's ``checkpoints`` directory works too when
        ``config`` is given.
      step: the checkpoint step to restore; None restores the latest.
      config: the run's config when not read from ``workdir/config.json``.
      mesh: the device mesh the state is placed on (default: all devices).
    """
    config = read_config(workdir) if config is None else config
    method = methods.get(config.method)
    if method.kind != "train":
        return Run(workdir, config, method, state=None, step=None)
    mesh = parallel.make_mesh() if mesh is None else mesh
    with jax.set_mesh(mesh):
        # The restore target: the fresh state's structure, shapes and shardings (the state's
        # values, prepared constants included, then come from the checkpoint).
        fn, args = trainer.init_fn(method, config)
        abstract = jax.eval_shape(fn, *args)
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract,
            trainer.state_shardings(abstract, mesh),
        )
        state = checkpoint.restore_dir(workdir, target, step)
    return Run(workdir, config, method, state, int(jax.device_get(state.step)))


def finished_run(workdir: str, train: ml_collections.ConfigDict | None = None) -> Run:
    """``load_run(workdir)``; with ``train`` (a config), the run is first trained in ``workdir``
    (an unfinished one resumed) unless it has finished there (its ``final_metrics.json``).

    Analyses of another run's model (``hedge_defense``) receive this as ``finished_run=``: a
    method may not import the trainer or the registry itself.
    """
    if train is not None and not os.path.isfile(os.path.join(workdir, "final_metrics.json")):
        trainer.train(train, workdir)
    return load_run(workdir)
