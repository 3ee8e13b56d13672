"""Finished runs: rebuild one from its workdir (config, method, restored state, results).

``load_run(workdir)`` is the one place that turns a directory written by ``jaxpapers.main`` back
into a config, its method and the trained state; the evaluation tools use it. ``load(workdir)``
(``jaxpapers.load``) adds what a researcher uses, picked by the method's hooks: every object is
a ``Run`` (``.config``, ``.method``, ``.state``, ``.step``) and, by kind,

    jaxpapers.load("runs/rat_smoke").predict(images)             # classifiers: logits
    jaxpapers.load("runs/stylegan2_dgl_smoke").sampler(jax.random.key(0), 16)  # GANs: images
    rec = jaxpapers.load("runs/synface_smoke")                    # Recognizer (embed_fn hook)
    rec.embed(faces); rec.verify(faces_a, faces_b, 0.3); rec.identify(probes, gallery, labels)
    jaxpapers.load("runs/unifacegan_smoke").infer(frames, lm, src, src_lm, "swap")  # Inference
    jaxpapers.load("runs/trace_smoke").infer(detections)          # (infer_fn hook)
    res = jaxpapers.load("runs/granular_smoke")                  # Results (analysis methods)
    res.tables["summary"]; res.arrays["tracks_rough"]["stress"]
    jaxpapers.load("runs/hedge_smoke").defended_predict(images, key)  # Results + the defense
"""

from __future__ import annotations

import dataclasses
import functools
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
from jaxpapers.evals import face_verification as fv


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

    @functools.cached_property
    def _jit_logits(self) -> Callable:
        return jax.jit(self.logits_fn)  # built once: every predict call reuses its executable

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Classifiers: logits (N, K) of images (N, H, W, C), uint8 or float in [0, 1]."""
        images = np.asarray(images)
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        fn = self._jit_logits
        return batching.map_batches(
            lambda x: fn(jnp.asarray(x, jnp.float32)),
            images,
            batch_size=batch_size,
            mesh=parallel.make_mesh(),
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


@dataclasses.dataclass
class Recognizer(Run):
    """A face recognition / re-ID run (methods with the ``embed_fn`` hook: ``from_occlusion``,
    ``synface``, ``stra``). Images are uint8 (N, H, W, C) at the run's input size; embeddings
    are the method's evaluation feature, unit-norm, so that a dot product is the cosine the
    evaluators score with."""

    @functools.cached_property
    def _jit_embed(self) -> Callable:
        return jax.jit(self._hook("embed_fn", "a recogniser")(self.state, self.config))

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Unit-norm embeddings (N, D) of uint8 images (N, H, W, C)."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"embed takes uint8 images (as the evaluators), got {images.dtype}.")
        return batching.map_batches(
            self._jit_embed, images, batch_size=batch_size, mesh=parallel.make_mesh()
        )

    def similarity(self, images_a: np.ndarray, images_b: np.ndarray) -> np.ndarray:
        """Cosine similarity (N,) of the pairs (images_a[i], images_b[i])."""
        return fv.cosine_scores(self.embed(images_a), self.embed(images_b))

    def verify(self, images_a: np.ndarray, images_b: np.ndarray, threshold: float) -> np.ndarray:
        """Same identity? (N,) bools: pair similarity above ``threshold`` (pick one on labelled
        pairs with ``jaxpapers.evals.face_verification.best_threshold``)."""
        return self.similarity(images_a, images_b) > threshold

    def identify(
        self, probes: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
    ) -> np.ndarray:
        """Rank-1 identification: the label (N,) of each probe's most similar gallery image."""
        sims = self.embed(probes) @ self.embed(gallery).T
        return np.asarray(gallery_labels)[np.argmax(sims, axis=1)]


@dataclasses.dataclass
class Inference(Run):
    """A run whose method documents an inference entry (the ``infer_fn`` hook): the face-video
    generators ``faceanime`` (still -> video) and ``unifacegan`` (swap / reenact a video) and the
    scene-graph predictor ``trace_vidsgg``. ``infer(...)`` is that entry bound to the restored
    state; its arguments are those of the method's ``evaluate.infer_fn`` docstring."""

    @functools.cached_property
    def infer(self) -> Callable:
        return self._hook("infer_fn", "a generator or predictor")(self.state, self.config)


@dataclasses.dataclass
class Results(Run):
    """A finished analysis run (``kind = "analysis"``): what it wrote into its workdir.

    Attributes (read on first use, from the files directly in the workdir):
      tables: ``<name>.json`` files by name (``summary``, ``final_metrics``, ``hedge_table``...).
      arrays: ``<name>.npz`` files by name, each a dict of NumPy arrays (e.g. ``tracks_rough``).
      reports: ``<name>.md`` files by name (the Markdown the run wrote, e.g. ``report``).
    """

    def _files(self, ext: str) -> dict[str, str]:
        out = {}
        for entry in sorted(os.scandir(self.workdir), key=lambda e: e.name):
            # Regular files only: a symlink could point outside the run.
            if entry.name.endswith(ext) and entry.is_file(follow_symlinks=False):
                out[entry.name[: -len(ext)]] = entry.path
        return out

    @functools.cached_property
    def tables(self) -> dict[str, Any]:
        out = {}
        for name, path in self._files(".json").items():
            with open(path) as f:
                out[name] = json.load(f)
        return out

    @functools.cached_property
    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name, path in self._files(".npz").items():
            with np.load(path, allow_pickle=False) as f:
                out[name] = {k: f[k] for k in f.files}
        return out

    @functools.cached_property
    def reports(self) -> dict[str, str]:
        out = {}
        for name, path in self._files(".md").items():
            with open(path) as f:
                out[name] = f.read()
        return out


@dataclasses.dataclass
class DefenseResults(Results):
    """A ``hedge_defense`` run: its tables (``Results``), the classifier it protected (``base``,
    a restored ``Run``: ``base.predict``) and ``defended_predict``, the hedge defense around it
    with the run's ``config.hedge`` settings."""

    base: Run | None = None

    @functools.cached_property
    def _jit_defended(self) -> Callable:
        from jaxpapers.methods.hedge_defense import defense

        logits_fn, kwargs = self.base.logits_fn, defense.hedge_kwargs(self.config.hedge)
        return jax.jit(lambda x, k: defense.hedge(logits_fn, x, k, **kwargs)[0])

    def defended_predict(
        self, images: np.ndarray, key: jax.Array, batch_size: int = 256
    ) -> np.ndarray:
        """The defended logits (N, K) of images in [0, 1] (or uint8): the hedge's prediction
        logits (``config.hedge.predict``); its random start draws from ``key``, folded in per
        batch."""
        images = np.asarray(images)
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        fn = self._jit_defended
        mesh = parallel.make_mesh()
        key = parallel.replicate_full(key, mesh)
        return batching.map_batches(
            lambda start, x: fn(x, jax.random.fold_in(key, start)),
            images.astype(np.float32),
            batch_size=batch_size,
            mesh=mesh,
            with_start=True,
        )


def _hedge_base_dir(run: Run) -> str:
    # The protected classifier: the run named by base.run_dir, else the one trained in the
    # workdir (hedge_defense's base_model.train_base).
    return run.config.base.run_dir or os.path.join(run.workdir, "base_model")


def load(workdir: str, step: int | None = None) -> Run:
    """``jaxpapers.load``: the finished run in ``workdir`` as the object of its method's kind.

    ``Recognizer`` (``embed_fn`` hook), ``Inference`` (``infer_fn`` hook), ``Results`` /
    ``DefenseResults`` (analysis methods), else a plain ``Run`` (``predict`` for classifiers,
    ``sampler`` for GANs). ``step`` picks a checkpoint (latest if None).
    """
    config = read_config(workdir)
    method = methods.get(config.get("method", ""))
    if method.kind == "analysis":
        if not os.path.isfile(os.path.join(workdir, "final_metrics.json")):
            raise FileNotFoundError(
                f"{workdir} is not a finished {config.method} run (no final_metrics.json): "
                "run it to the end with python -m jaxpapers.main."
            )
        if config.method == "hedge_defense":
            # The one analysis built around a trained model: the analysis contract has no hook
            # for it, so the defended classifier is rebuilt here from the run's base classifier
            # with the defense's public functions.
            run = DefenseResults(workdir, config, method, None, None)
            run.base = load_run(_hedge_base_dir(run))
            return run
        return Results(workdir, config, method, None, None)
    ckpts = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpts) or not os.listdir(ckpts):
        raise FileNotFoundError(
            f"{workdir} is not a finished {config.method} run (no checkpoint in {ckpts}): "
            "train it with python -m jaxpapers.main."
        )
    run = load_run(workdir, step, config)
    for hook, cls in (("embed_fn", Recognizer), ("infer_fn", Inference)):
        if methods.hook(method, hook) is not None:
            return cls(**{f.name: getattr(run, f.name) for f in dataclasses.fields(Run)})
    return run
