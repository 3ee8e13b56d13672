"""Scores a generator (or an array of images) against real data with a named feature network.

``evaluate_generator(sample_fn, cfg, workdir)`` is what the GAN methods call:

    cfg = default_eval_config()          # FD-FMNIST on Fashion-MNIST test, offline
    results = evaluate_generator(lambda key, n: g_apply(key, n), cfg, workdir)
    # {'fd': ..., 'kid_mean': ..., 'kid_std': ..., 'precision': ..., 'recall': ...,
    #  'is_fmnist_mean': ..., 'is_fmnist_std': ..., 'class_share_min': ..., 'class_share_max': ...}

``class_share_min/max`` (the FD-FMNIST net only, a classifier of the data's ten classes): the
smallest and largest fraction of the fakes it puts in one class (0.1 each for a balanced set).

With ``cfg.feature_net = 'inception'`` (needs the pytorch-fid weight file) the keys are
``fid, kid_mean, kid_std, is_mean, is_std, precision, recall``. Every call writes
``gan_metrics_<feature_net>.json`` into ``workdir`` with the numbers, the feature network's
label and the real-statistics cache key (dataset, split, feature net, resolution, count).

Protocol notes (see the README beside this file for deviations): fakes are quantised to uint8
as StyleGAN2-ADA does before Inception; FD uses all real images of the split (or
``real_num_samples``) vs ``num_samples`` fakes (the paper protocol is 50k fakes); KID uses 100
subsets of <= 1000; IS 10 splits over the fakes; precision/recall k = 3 on the same features
(StyleGAN2-ADA uses VGG16 features for PR, which we do not have).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxpapers.evals.gan import feature_nets, metrics, stats_cache

SampleFn = Callable[[jax.Array, int], jax.Array]


def default_eval_config() -> ml_collections.ConfigDict:
    """Defaults: FD-FMNIST of 10k fakes vs the Fashion-MNIST test split, offline on a CPU."""
    return ml_collections.ConfigDict(
        dict(
            feature_net="fmnist",  # 'fmnist' (FD-FMNIST, shipped weights) | 'inception' (FID)
            num_samples=10_000,  # fakes; the papers' protocol is 50_000 (fid50k)
            batch_size=200,  # feature-extraction (and sampling) batch, sharded over the devices
            seed=0,  # sampling key and KID subset draws
            real_dataset="fashion_mnist",  # any jaxpapers.data name
            real_split="test",
            real_data_path="",  # data.path for 'image_folder'
            real_num_samples=0,  # 0: the whole split
            inception_weights="",  # pt_inception-2015-12-05-6726825d.pth or its converted .npz
            fmnist_weights="",  # '' = the weights shipped in jaxpapers/evals/gan/weights/
            stats_dir="",  # '' = $JAXPAPERS_CACHE/gan_stats
            quantize=True,  # fakes -> uint8 before the feature net (StyleGAN2-ADA protocol)
            kid_subsets=100,
            kid_subset_size=1000,
            is_splits=10,
            pr_k=3,
            pr_num_samples=10_000,  # cap on reals and fakes for precision/recall
        )
    )


_NAMED_REAL_KEYS: dict[tuple, dict] = {}  # (data set, path, split, count, net, stats dir) -> key


def _array_to_uint8(images: np.ndarray, quantize: bool = True) -> np.ndarray:
    """uint8 stays; floats are taken to lie in [-1, 1] (the generators' output range)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float in [-1, 1]; got dtype {images.dtype}.")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or Inf.")
    if not quantize:
        raise ValueError("quantize=False is not supported: feature nets take uint8 images.")
    return np.asarray(feature_nets.to_uint8(images))


def _real_images(cfg, real_images) -> tuple[np.ndarray, str, str]:
    """(uint8 images, dataset name, split) from ``real_images`` or ``jaxpapers.data.load``."""
    if real_images is not None:
        images = _array_to_uint8(real_images)
        digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
        return images, f"array-{digest}", "given"
    from jaxpapers import data  # the foundation loader (local builders or prepared TFDS)

    data_cfg = ml_collections.ConfigDict(dict(name=cfg.real_dataset, path=cfg.real_data_path))
    arrays = data.load(data_cfg, cfg.real_split)
    if "image" not in arrays:
        raise ValueError(f"data set {cfg.real_dataset!r} has no 'image' field: {list(arrays)}.")
    return _array_to_uint8(arrays["image"]), cfg.real_dataset, cfg.real_split


def real_statistics(
    net: feature_nets.FeatureNet,
    extractor: feature_nets.Extractor,
    cfg: ml_collections.ConfigDict,
    real_images: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Cached (features, mu, sigma, logits) of the real set and its cache key."""
    # A job scoring several generators (teacher and student) reads the real set once: the
    # cache key of a named data set is remembered here, so later calls skip decoding it.
    named = None
    if real_images is None:
        named = (cfg.real_dataset, cfg.real_data_path, cfg.real_split, cfg.real_num_samples)
        named += (net.name, net.weights_id, cfg.stats_dir)
        key = _NAMED_REAL_KEYS.get(named)
        entry = None if key is None else stats_cache.load(key, cfg.stats_dir)
        if entry is not None:
            return entry, key
    images, dataset, split = _real_images(cfg, real_images)
    if cfg.real_num_samples:
        if cfg.real_num_samples > len(images):
            raise ValueError(f"real_num_samples={cfg.real_num_samples} > {len(images)} images.")
        images = images[: cfg.real_num_samples]
    key = stats_cache.make_key(
        dataset=dataset,
        split=split,
        feature_net=f"{net.name}:{net.weights_id}",
        resolution=f"{images.shape[1]}x{images.shape[2]}x{images.shape[3]}",
        count=len(images),
    )
    entry = stats_cache.load(key, cfg.stats_dir)
    if entry is None:
        feats, logits = extractor.array(images)
        entry = stats_cache.save(key, feats, logits, cfg.stats_dir)
    if named is not None:
        _NAMED_REAL_KEYS[named] = key
    return entry, key


def fake_features(
    sample_fn: SampleFn, extractor: feature_nets.Extractor, cfg: ml_collections.ConfigDict
) -> tuple[np.ndarray, np.ndarray]:
    """Features/logits of ``cfg.num_samples`` fakes drawn in batches of ``cfg.batch_size``."""
    root = jax.random.key(cfg.seed)

    def batches():
        done, i = 0, 0
        while done < cfg.num_samples:
            images = sample_fn(jax.random.fold_in(root, i), cfg.batch_size)
            if images.ndim != 4 or images.shape[0] != cfg.batch_size:
                raise ValueError(
                    f"sample_fn(key, {cfg.batch_size}) must return (n, H, W, C) images; "
                    f"got shape {images.shape}."
                )
            take = min(cfg.batch_size, cfg.num_samples - done)
            yield feature_nets.to_uint8(images)[:take]
            done, i = done + take, i + 1

    return extractor.stream(batches())


def score_features(
    net: feature_nets.FeatureNet,
    real: dict[str, np.ndarray],
    fake_feats: np.ndarray,
    fake_logits: np.ndarray,
    cfg: ml_collections.ConfigDict,
    real_key: dict | None = None,
) -> dict[str, float]:
    """All metrics of fakes vs the real entry, keyed as documented in the module docstring.

    With ``real_key`` (the entry's cache key) the real features' k-NN radii are cached in the
    entry the first time they are needed (they depend on the reals only; on the 10k
    Fashion-MNIST test features they were most of the precision/recall time), and so are the
    real-real KID sums (they depend on the reals and the number of fakes)."""
    mu, sigma = metrics.feature_stats(fake_feats)
    out = {net.fd_name: metrics.frechet_distance(real["mu"], real["sigma"], mu, sigma)}
    kid_args = (cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
    sums = None
    if real_key is not None:  # The real-real KID sums depend on the reals and the fake count.
        name = "kid_real_sums_{}_{}_{}_{}".format(len(fake_feats), *kid_args)
        n = len(fake_feats)
        sums = _cached(
            real, real_key, name, cfg, metrics.kid_real_sums, real["features"], n, *kid_args
        )
    out["kid_mean"], out["kid_std"] = metrics.kernel_distance(
        real["features"], fake_feats, *kid_args, real_sums=sums
    )
    is_key = "is" if net.name == "inception" else f"is_{net.name}"
    if len(fake_logits) >= cfg.is_splits:
        out[f"{is_key}_mean"], out[f"{is_key}_std"] = metrics.inception_score(
            fake_logits, cfg.is_splits
        )
    if net.name == "fmnist" and len(fake_logits):
        # The data's own classifier: how the fakes spread over the ten classes (mode coverage
        # a recall of ~0 cannot show; a collapsed generator puts most fakes in one class).
        shares = np.bincount(np.argmax(fake_logits, axis=1), minlength=fake_logits.shape[1])
        shares = shares / len(fake_logits)
        out["class_share_min"], out["class_share_max"] = float(shares.min()), float(shares.max())
    rng = np.random.default_rng(cfg.seed)
    cap = cfg.pr_num_samples

    def subset(x):
        return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]

    real_feats = subset(real["features"])
    radii = None
    if real_key is not None and len(real_feats) == len(real["features"]):  # All reals: cacheable.
        radii = _cached(
            real, real_key, f"knn_radii_k{cfg.pr_k}", cfg, metrics.knn_radii, real_feats, cfg.pr_k
        )
    out["precision"], out["recall"] = metrics.precision_recall(
        real_feats, subset(fake_feats), k=cfg.pr_k, real_radii=radii
    )
    return out


def _cached(real: dict, key: dict, name: str, cfg, fn, *args) -> np.ndarray:
    """``real[name]``, computed as ``fn(*args)`` and added to the real-statistics cache entry the
    first time (a training job's evals then pay for it once)."""
    if name not in real:
        real[name] = fn(*args)
        stats_cache.add(key, {name: real[name]}, cfg.stats_dir)
    return real[name]


def _write_report(workdir: str, net, results, key, cfg, num_fake, seconds) -> str:
    report = dict(
        metrics=results,
        feature_net=net.name,
        feature_net_label=net.label,
        real_stats_key=key,
        num_fake=int(num_fake),
        protocol=dict(
            quantize=bool(cfg.quantize),
            kid_subsets=cfg.kid_subsets,
            kid_subset_size=cfg.kid_subset_size,
            is_splits=cfg.is_splits,
            pr_k=cfg.pr_k,
            pr_num_samples=cfg.pr_num_samples,
            seed=cfg.seed,
        ),
        seconds=round(seconds, 2),
    )
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"gan_metrics_{net.name}.json")
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def evaluate_generator(
    sample_fn: SampleFn,
    cfg: ml_collections.ConfigDict | None = None,
    workdir: str = ".",
    *,
    real_images: np.ndarray | None = None,
) -> dict[str, float]:
    """Samples ``cfg.num_samples`` fakes with ``sample_fn(key, n)`` (float NHWC in [-1, 1]) and
    scores them against the real set; writes ``gan_metrics_<net>.json`` into ``workdir``.

    Args:
      sample_fn: ``(key, n) -> (n, H, W, C)`` images in [-1, 1]; called with n = batch_size.
      cfg: ``default_eval_config()`` or a copy with changes.
      workdir: where the JSON report goes.
      real_images: optional real images (uint8, or float in [-1, 1]) instead of
        ``cfg.real_dataset``/``real_split``; cached under a hash of their bytes.
    """
    cfg = cfg if cfg is not None else default_eval_config()
    if not cfg.quantize:
        raise ValueError("quantize=False is not supported: feature nets take uint8 images.")
    if cfg.num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {cfg.num_samples}.")
    return _evaluate(lambda ex: fake_features(sample_fn, ex, cfg), cfg, workdir, real_images)


def evaluate_images(
    images: np.ndarray,
    cfg: ml_collections.ConfigDict | None = None,
    workdir: str = ".",
    *,
    real_images: np.ndarray | None = None,
) -> dict[str, float]:
    """Like ``evaluate_generator`` for a fixed array of fakes (uint8, or float in [-1, 1])."""
    cfg = cfg if cfg is not None else default_eval_config()
    fakes = _array_to_uint8(images)
    return _evaluate(lambda ex: ex.array(fakes), cfg, workdir, real_images)


def _evaluate(fakes_fn, cfg, workdir: str, real_images) -> dict[str, float]:
    """Real statistics, ``fakes_fn(extractor) -> (features, logits)``, scores and the report."""
    start = time.time()
    net = feature_nets.get_feature_net(cfg)
    extractor = feature_nets.Extractor(net, cfg.batch_size)
    real, key = real_statistics(net, extractor, cfg, real_images)
    feats, logits = fakes_fn(extractor)
    results = score_features(net, real, feats, logits, cfg, key)
    _write_report(workdir, net, results, key, cfg, len(feats), time.time() - start)
    return results


def evaluate_method_sampler(
    sample_fn: Callable[[jax.Array, int], np.ndarray], config, workdir: str, tag: str
) -> dict[str, float]:
    """Scores a GAN method's sampler with its ``config.eval`` against ``config.data``'s test split.

    The one place the GAN methods (stylegan2_dgl, biggan_dgl, ...) turn their configs into an
    evaluator config. Fashion-MNIST reals are 28x28 while the models generate the padded
    ``config.data.pad_to`` size, so fakes are center-cropped back to 28x28 before scoring.
    Returns ``{f"{tag}_{metric}": value}`` and writes the report under ``workdir/eval_{tag}``.
    """
    ev = config.eval
    pad = int(config.data.get("pad_to", 0)) if config.data.name == "fashion_mnist" else 0

    def cropped(key: jax.Array, n: int) -> np.ndarray:
        img = np.asarray(sample_fn(key, n))
        # The 28 -> pad_to border, at the generator's resolution (smaller in smoke configs).
        crop = img.shape[1] * (pad - 28) // (2 * pad) if pad > 28 else 0
        return img[:, crop : img.shape[1] - crop, crop : img.shape[2] - crop] if crop else img

    cfg = default_eval_config()
    # Every evaluator option the method's eval config also names (feature_net, num_samples,
    # batch_size, inception_weights, stats_dir, ...) is taken from it; its ``seed`` is the
    # method's grid seed, not the evaluator's sampling seed.
    for k in cfg.keys():
        if k != "seed" and k in ev:
            cfg[k] = type(cfg[k])(ev[k])
    cfg.real_dataset = config.data.name
    cfg.real_data_path = config.data.path
    out = evaluate_generator(cropped, cfg, os.path.join(workdir, f"eval_{tag}"))
    return {f"{tag}_{k}": float(v) for k, v in out.items()}
