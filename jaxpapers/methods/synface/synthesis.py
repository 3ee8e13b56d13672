"""SynFace dataset synthesis on the identity-conditioned generator.

Official script (haibo-qiu/SynFace data/syn_images.py, run inside DiscoFaceGAN):
  * N identities, identity latent of class i seeded; for each of its S images a *different*
    partner identity j (distinct within the class) and phi uniform on {0, 0.05, ..., 1};
  * identity coefficients phi*c_i + (1-phi)*c_j; expression/pose/lighting/noise from the image's
    own random draw;
  * attribute-preserving truncation w = w_full + (1-psi_t)*(w_bar_id - w_idonly) on the first
    layers (0.7, 8 of 14 W+ layers);
  * file name "{k}_{i}x{phi}_({j})x{1-phi}.jpg" -> labels (i, phi), (j, 1-phi).
Here the rows of that plan are arrays (`synthesis_plan`), the image of a row is a deterministic
function of the row and the generator (`generate`, also called inside the train step), new
identity codes are drawn from the learned code distribution (`new_identity_codes`) and
`SynFaceSynthetic` writes the set as TFDS array_record with the generation config as metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxpapers.methods.synface import losses
from jaxpapers.methods.synface import model as M

Array = jax.Array
PLAN_KEYS = ("syn_id_a", "syn_id_b", "syn_phi", "syn_seed")


def synthesis_plan(
    num_ids: int, per_id: int, seed: int, mixup: bool, grid_step: float = 0.05
) -> dict[str, np.ndarray]:
    """Rows (identity i, partner j != i, phi, image seed) of an N x S synthetic set.

    Partners are distinct within a class (``random.sample`` in the official script); without
    identity mixup phi = 1 (the partner then has weight 0).
    """
    if num_ids < 2 or per_id < 1:
        raise ValueError(f"Need >= 2 identities and >= 1 image each, got {num_ids} x {per_id}.")
    if mixup and per_id > num_ids - 1:
        raise ValueError(f"{per_id} distinct partners per identity need > {per_id} identities.")
    rng = np.random.RandomState(seed)
    grid = losses.mixup_grid(grid_step)
    ids_a, ids_b, phis = [], [], []
    for i in range(num_ids):
        others = np.delete(np.arange(num_ids), i)
        ids_b.append(rng.choice(others, per_id, replace=per_id > len(others)))
        ids_a.append(np.full(per_id, i))
        phis.append(grid[rng.randint(0, len(grid), per_id)] if mixup else np.ones(per_id))
    n = num_ids * per_id
    return {
        "syn_id_a": np.concatenate(ids_a).astype(np.int32),
        "syn_id_b": np.concatenate(ids_b).astype(np.int32),
        "syn_phi": np.concatenate(phis).astype(np.float32),
        "syn_seed": (seed * 1_000_003 + np.arange(n)).astype(np.int32),
    }


def new_identity_codes(train_codes: Array, key: Array, num: int) -> Array:
    """New identity codes from the Gaussian fitted to the learned training codes.

    c = mu + g @ (C - mu) / sqrt(n - 1), g ~ N(0, I_n): exactly N(mu, empirical covariance) on
    the span of the training codes, so new identities follow the learned code distribution
    without being any of the training identities.
    """
    n = train_codes.shape[0]
    if n < 2:
        raise ValueError("Fitting the identity-code distribution needs >= 2 training codes.")
    mu = jnp.mean(train_codes, axis=0)
    g = jax.random.normal(key, (num, n))
    return mu + g @ (train_codes - mu) / jnp.sqrt(n - 1.0)


def identity_codes(g_params, config) -> Array:
    """The N new identity codes of the configured synthetic set (deterministic in synth.seed)."""
    s = config.synth
    return new_identity_codes(g_params["id_codes"], jax.random.key(int(s.seed)), int(s.num_ids))


def generate(
    g_params,
    codes: Array,
    rows: dict,
    config,
    vary_mask: Array | None = None,
    anchor_seed: Array | None = None,
) -> Array:
    """Images in [-1, 1] of plan rows (pure, jittable; noise_mode 'none' for determinism).

    Args:
      g_params: generator params.
      codes: (N, code_dim) identity codes (`identity_codes`).
      rows: dict with syn_id_a, syn_id_b, syn_phi, syn_seed arrays (B,).
      config: the method config (gen, synth sections).
      vary_mask: optional (num_ws,) bool: layers whose style comes from the row's own z; the
        others take z from `anchor_seed` (controlled-variation sets).
      anchor_seed: (B,) seeds of the fixed "other factors" for `vary_mask`.
    """
    g_net = M.build_generator(config)
    phi = rows["syn_phi"].astype(jnp.float32)[:, None]
    code = phi * codes[rows["syn_id_a"]] + (1.0 - phi) * codes[rows["syn_id_b"]]
    zdim = config.gen.z_dim

    def z_of(seeds):
        return jax.vmap(lambda s: jax.random.normal(jax.random.key(s), (zdim,)))(seeds)

    def ws_of(z, c):
        return g_net.apply({"params": g_params}, z, c, method=g_net.mapping)

    ws = ws_of(z_of(rows["syn_seed"]), code)
    if vary_mask is not None:
        ws_anchor = ws_of(z_of(anchor_seed), code)
        ws = jnp.where(vary_mask[None, :, None], ws, ws_anchor)
    psi_t = float(config.synth.truncation_psi)
    if psi_t != 1.0:
        # Attribute-preserving truncation: pull only the identity part toward the average
        # identity (w_bar_id over the new identities, z = 0), on the first `cutoff` layers.
        w_idonly = ws_of(jnp.zeros_like(z_of(rows["syn_seed"])), code)
        m = min(int(config.synth.num_ids), 1024)
        w_bar = jnp.mean(ws_of(jnp.zeros((m, zdim)), codes[:m]), axis=0, keepdims=True)
        delta = (1.0 - psi_t) * (w_bar - w_idonly)
        cut = jnp.arange(ws.shape[1]) < int(config.synth.truncation_cutoff)
        ws = ws + jnp.where(cut[None, :, None], delta, 0.0)
    img = g_net.apply({"params": g_params}, ws, "none", method=g_net.synthesis)
    return jnp.clip(img, -1.0, 1.0)


def to_uint8(img: Array) -> Array:
    """[-1, 1] -> uint8 levels, exactly as the stored images (round half up)."""
    return jnp.clip(jnp.floor((img + 1.0) * 127.5 + 0.5), 0, 255).astype(jnp.uint8)


def plan_chunks(
    g_params, config, plan: dict[str, np.ndarray], batch: int = 256
) -> Iterator[dict[str, np.ndarray]]:
    """Generated uint8 images + labels of a plan, chunk by chunk (host numpy)."""
    codes = identity_codes(g_params, config)
    fn = jax.jit(lambda p, c, r: to_uint8(generate(p, c, r, config)))
    n = len(plan["syn_seed"])
    for lo in range(0, n, batch):
        rows = {k: v[lo : lo + batch] for k, v in plan.items()}
        pad = batch - len(rows["syn_seed"])
        full = {
            k: np.concatenate([v, np.repeat(v[-1:], pad)]) if pad else v for k, v in rows.items()
        }
        img = np.asarray(jax.device_get(fn(g_params, codes, full)))[: batch - pad]
        yield {"image": img, **rows}


class SynFaceSynthetic(tfds.core.GeneratorBasedBuilder):
    """A generated SynFace set: image + two labels and weights per example (array_record).

    Features: image uint8 (H, W, C), label_a/label_b int64, weight_a/weight_b float32 (the IM
    two-hot label), seed int64.  ``info.metadata['generation']`` holds the generation config.
    """

    VERSION = tfds.core.Version("1.0.0")

    def __init__(
        self,
        *,
        chunks: Callable[[], Iterator[dict]] | None = None,
        image_shape: tuple[int, int, int] = (32, 32, 1),
        generation: dict | None = None,
        **kwargs,
    ):
        self._chunks = chunks
        self._shape = tuple(int(s) for s in image_shape)
        self._generation = dict(generation or {})
        super().__init__(**kwargs)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=self._shape, dtype=np.uint8),
                    "label_a": tfds.features.Scalar(dtype=np.int64),
                    "label_b": tfds.features.Scalar(dtype=np.int64),
                    "weight_a": tfds.features.Scalar(dtype=np.float32),
                    "weight_b": tfds.features.Scalar(dtype=np.float32),
                    "seed": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            metadata=tfds.core.MetadataDict(generation=json.dumps(self._generation)),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        if self._chunks is None:
            raise ValueError(
                "SynFaceSynthetic is not prepared here and has no generator chunks; "
                "build it with write_synthetic_set(...) first."
            )
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        k = 0
        for chunk in self._chunks():
            for i in range(len(chunk["image"])):
                phi = float(chunk["syn_phi"][i])
                yield (
                    k,
                    {
                        "image": chunk["image"][i],
                        "label_a": int(chunk["syn_id_a"][i]),
                        "label_b": int(chunk["syn_id_b"][i]),
                        "weight_a": phi,
                        "weight_b": 1.0 - phi,
                        "seed": int(chunk["syn_seed"][i]),
                    },
                )
                k += 1


def write_synthetic_set(
    directory: str,
    chunks: Callable[[], Iterator[dict]],
    image_shape: tuple[int, int, int],
    generation: dict,
) -> SynFaceSynthetic:
    """Writes (or reuses, if already prepared) the set under `directory`; returns the builder."""
    os.makedirs(directory, exist_ok=True)
    b = SynFaceSynthetic(
        chunks=chunks, image_shape=image_shape, generation=generation, data_dir=directory
    )
    b.download_and_prepare(file_format="array_record")
    return b


def read_synthetic_set(directory: str, image_shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """All examples of a prepared set as arrays (+ its generation config under 'generation')."""
    b = SynFaceSynthetic(image_shape=image_shape, data_dir=directory)
    src = b.as_data_source(split="train")
    recs = src.__getitems__(list(range(len(src))))
    out = {k: np.stack([np.asarray(r[k]) for r in recs]) for k in recs[0]}
    out["generation"] = json.loads(b.info.metadata["generation"])
    return out
