"""Identity embeddings for identity-preserving face generation (FaceAnime L_id, UniFaceGAN).

FaceAnime's generator loss has an identity term (pingponglabs/FaceAnime
main_paraltrain_withMask_300vw_idloss.py SuperIdentityLoss): the mean squared difference of the
L2-normalised embeddings of a *frozen* face-recognition network (CBAM-ResNet50-IR ArcFace, inputs
resized to 112x112) of the generated and the real frame.  No such network can be had offline, so
the suite trains its own small one here: an IResNet-style backbone (`layers/face_backbones.py`)
with an ArcFace head (`lib/margin_heads.py`), trained in one jitted `lax.scan` on a face folder
with identity labels (the ORL faces on the CPU; any identity folder at scale).

Design choices (why):
  * Grey input: the ORL faces are grey, so the net sees luminance only; `embed` converts RGB to
    grey (ITU-R 601 weights) so RGB generator outputs and grey training faces live in one domain.
  * `IdentityModel` is a `flax.struct` pytree (params/batch_stats leaves, config static), so it
    can be closed over or passed into any jitted loss; `embed` is pure and differentiable
    (bilinear resize inside) and uses the BN running statistics (eval mode, frozen as in FaceAnime).

Public API:
  IdentityConfig, IdentityModel(.embed), build_net, train_identity_net, identity_similarity,
  identity_loss (FaceAnime's form), save, load, load_or_train, orl_faces, verification_scores.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import batching, checkpoint, optim, parallel
from jaxpapers.layers import face_backbones as fb
from jaxpapers.lib import margin_heads as mh

Array = jax.Array
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma


@dataclasses.dataclass(frozen=True)
class IdentityConfig:
    """Static description of an identity network (hashable: it is a static pytree field).

    Attributes:
      size: (H, W) the net's input size; inputs of any size are bilinearly resized to it.
      widths: stem + 4 stage widths of the IR backbone.
      depths: IR units per stage.
      embed_dim: embedding size D.
      num_classes: identities of the training set (ArcFace centres).
      margin_s, margin_m: ArcFace scale and additive angular margin.
    """

    size: tuple[int, int] = (48, 48)
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    embed_dim: int = 128
    num_classes: int = 40
    margin_s: float = 30.0
    margin_m: float = 0.3


def build_net(cfg: IdentityConfig) -> fb.FaceRecognitionNet:
    """IResNet-style net (BN2d head, no dropout) on 1-channel (grey) input."""
    return fb.FaceRecognitionNet(
        widths=tuple(cfg.widths),
        depths=tuple(cfg.depths),
        embed_dim=cfg.embed_dim,
        dropout=0.0,
        flat_bn=False,
        fix_final_scale=True,
        kernel_init="xavier_uniform",
    )


def to_grey(images: Array) -> Array:
    """[..., H, W, 3 or 1] -> [..., H, W, 1] luminance (a 1-channel input passes through)."""
    c = images.shape[-1]
    if c == 1:
        return images
    if c != 3:
        raise ValueError(f"Identity net expects 1 or 3 channels, got shape {images.shape}.")
    return jnp.tensordot(images, jnp.asarray(_GREY, images.dtype), axes=([-1], [0]))[..., None]


def prepare(images: Array, size: Sequence[int]) -> Array:
    """float [-1, 1] [B, H, W, C] -> grey [B, size, 1] (bilinear, differentiable)."""
    if images.ndim != 4:
        raise ValueError(f"Expected images [B, H, W, C], got shape {images.shape}.")
    g = to_grey(images.astype(jnp.float32))
    if tuple(g.shape[1:3]) != tuple(size):
        g = jax.image.resize(g, (g.shape[0], *size, 1), "bilinear", antialias=False)
    return g


@flax.struct.dataclass
class IdentityModel:
    """A trained (frozen) identity network: `embed(images)` -> L2-normalised [B, D]."""

    params: Any
    batch_stats: Any
    config: IdentityConfig = flax.struct.field(pytree_node=False)

    def embed(self, images: Array) -> Array:
        """Embeds float images in [-1, 1] [B, H, W, 1|3]; pure, jit- and grad-friendly."""
        x = prepare(images, self.config.size)
        emb = build_net(self.config).apply(
            {"params": self.params, "batch_stats": self.batch_stats}, x, train=False
        )
        return mh.l2_normalize(emb)


def identity_similarity(a: Array, b: Array) -> Array:
    """Row-wise cosine similarity of two embedding batches [B, D] -> [B]."""
    return jnp.sum(mh.l2_normalize(a) * mh.l2_normalize(b), axis=-1)


def identity_loss(model: IdentityModel, fake: Array, real: Array, eps: float = 1e-6) -> Array:
    """FaceAnime's L_id: mean over elements of (e(fake) - e(real))^2 + eps (official form).

    The official code averages over the embedding elements too (its comment says "wrong here!"),
    which only rescales the term; we keep it so the official weight 1e4 means the same.
    """
    d = model.embed(fake) - jax.lax.stop_gradient(model.embed(real))
    return jnp.mean(d * d + eps)


# ----------------------------------------------------------------------------------- training


def _augment(key: Array, x: Array, pad: int) -> Array:
    """Random flip, translation by up to `pad` pixels, brightness/contrast jitter ([B,H,W,1])."""
    b, h, w, _ = x.shape
    k1, k2, k3, k4 = jax.random.split(key, 4)
    flip = jax.random.bernoulli(k1, 0.5, (b, 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    off = jax.random.randint(k2, (b, 2), 0, 2 * pad + 1)
    x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, 1)))(xp, off)
    gain = jax.random.uniform(k3, (b, 1, 1, 1), minval=0.8, maxval=1.2)
    bias = jax.random.uniform(k4, (b, 1, 1, 1), minval=-0.2, maxval=0.2)
    return jnp.clip(x * gain + bias, -1.0, 1.0)


def _arcface_step(net, head, tx, data, labs, pad: int, batch_size: int):
    """One SGD step of ``train_identity_net`` as a ``lax.scan`` body over per-step keys: a batch
    drawn with replacement, augmented, ArcFace loss, BN statistics updated in train mode."""

    def step(carry, k):
        params, stats, opt = carry
        ki, ka = jax.random.split(k)
        idx = jax.random.randint(ki, (batch_size,), 0, data.shape[0])
        x, y = _augment(ka, data[idx], pad), labs[idx]

        def loss_fn(p):
            emb, upd = net.apply(
                {"params": p["net"], "batch_stats": stats},
                x,
                train=True,
                mutable=["batch_stats"],
            )
            logits, cos = head.apply({"params": p["head"]}, emb, y)
            acc = jnp.mean(jnp.argmax(cos, -1) == y)
            return mh.softmax_cross_entropy(logits, y), (upd["batch_stats"], acc)

        (loss, (stats, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd), stats, opt), (loss, acc)

    return step


def train_identity_net(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    size: Sequence[int] = (48, 48),
    steps: int = 300,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 0.1,
    config: IdentityConfig | None = None,
    return_log: bool = False,
) -> IdentityModel | tuple[IdentityModel, dict[str, np.ndarray]]:
    """Trains an identity net with ArcFace on (images, labels) in one jitted scan.

    Args:
      images: uint8 [N, H, W, C] (C = 1 or 3; any size, resized to `size`).
      labels: int [N] identity labels in [0, num_classes).
      size: input size of the net (ignored when `config` is given).
      steps: SGD steps (momentum 0.9, wd 5e-4, cosine lr from `lr`).
      seed: PRNG seed (init, batches, augmentation).
      batch_size: examples per step (sampled with replacement).
      lr: peak learning rate.
      config: full IdentityConfig (num_classes is set from the labels).
      return_log: also return {'loss', 'acc'} per step (batch accuracy of the cosine argmax).

    Returns:
      The trained IdentityModel (BN running statistics from training, eval mode in `embed`),
      and the log when `return_log`.
    """
    images = np.asarray(images)
    labels = np.asarray(labels, np.int32)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
        raise ValueError(
            f"Expected uint8 images [N,H,W,C] and labels [N]; got {images.shape} "
            f"{images.dtype} and {labels.shape}."
        )
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}.")
    n_cls = int(labels.max()) + 1
    cfg = config or IdentityConfig(size=tuple(int(s) for s in size))
    cfg = dataclasses.replace(cfg, num_classes=n_cls)
    net = build_net(cfg)
    head = mh.MarginHead(n_cls, mh.arcface(cfg.margin_s, cfg.margin_m))
    tx = optim.make(
        optim.config(
            name="momentum",
            lr=lr,
            schedule="cosine",
            total_steps=steps,
            warmup_steps=min(50, steps // 10),
            weight_decay=5e-4,
            decay_mask="all",
        )
    )
    pad = max(1, cfg.size[0] // 16)

    @jax.jit
    def run(key, data, labs):
        data = prepare(data.astype(jnp.float32) / 127.5 - 1.0, cfg.size)
        k_init, k_loop = jax.random.split(key)
        v = net.init(k_init, data[:2], train=False)
        params = {
            "net": v["params"],
            "head": head.init(k_init, jnp.zeros((1, cfg.embed_dim)), labs[:1])["params"],
        }
        stats = v["batch_stats"]

        step = _arcface_step(net, head, tx, data, labs, pad, batch_size)

        carry = (params, stats, tx.init(params))
        (params, stats, _), (losses, accs) = jax.lax.scan(
            step, carry, jax.random.split(k_loop, steps)
        )
        return params["net"], stats, losses, accs

    p, s, losses, accs = run(jax.random.key(seed), jnp.asarray(images), jnp.asarray(labels))
    losses = np.asarray(losses)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"Identity-net training diverged (loss {losses[-5:]}); lower lr.")
    model = IdentityModel(params=p, batch_stats=s, config=cfg)
    return (model, {"loss": losses, "acc": np.asarray(accs)}) if return_log else model


# ------------------------------------------------------------------------------ save / load


def save(model: IdentityModel, directory: str) -> str:
    """Writes `identity_config.json` and an Orbax checkpoint of the weights into `directory`."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "identity_config.json"), "w") as f:
        json.dump(dataclasses.asdict(model.config), f)
    ck = checkpoint.Checkpointer(os.path.join(directory, "checkpoints"), keep=1, async_save=False)
    ck.save(0, {"params": model.params, "batch_stats": model.batch_stats}, force=True)
    ck.close()
    return directory


def load(directory: str) -> IdentityModel:
    """Reads a model written by `save` (clear error when the directory is missing/incomplete)."""
    cfg_path = os.path.join(directory, "identity_config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"No identity model in {directory!r} (missing {cfg_path}).")
    with open(cfg_path) as f:
        raw = json.load(f)
    cfg = IdentityConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    tree = checkpoint.restore_params(os.path.join(directory, "checkpoints"))
    to_jnp = lambda t: jax.tree.map(jnp.asarray, t)  # noqa: E731
    return IdentityModel(
        params=to_jnp(tree["params"]), batch_stats=to_jnp(tree["batch_stats"]), config=cfg
    )


def load_or_train(
    directory: str, images: np.ndarray, labels: np.ndarray, **train_kw: Any
) -> IdentityModel:
    """Loads the model cached in `directory`, else trains it on (images, labels) and saves it."""
    if os.path.isfile(os.path.join(directory, "identity_config.json")):
        return load(directory)
    model = train_identity_net(images, labels, **train_kw)
    # Save next to the target and rename: two processes training the same model concurrently
    # must not write into one checkpoint directory (the loser loads the winner's model).
    tmp = f"{os.path.abspath(directory)}.tmp-{os.getpid()}"
    save(model, tmp)
    try:
        os.rename(tmp, directory)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return load(directory)
    return model


# ------------------------------------------------------------------------------------- data


def orl_faces(path: str = "", size: Sequence[int] = (64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """The ORL faces (or any root/<identity>/<img> folder) as uint8 [N, H, W, 1] + labels [N].

    ``path`` empty: `jaxpapers.data.faces.resolve_dir` ($JAXPAPERS_DATA_DIR, then Olivetti).
    """
    from jaxpapers.data import builders, faces  # host-side only

    path = faces.resolve_dir(path, key="identity.path")
    _, files = builders.list_image_folder(path)
    imgs = np.stack([builders.read_image(p, tuple(size), 1) for p, _ in files])
    return imgs, np.asarray([lab for _, lab in files], np.int32)


def verification_scores(
    model: IdentityModel,
    images: np.ndarray,
    labels: np.ndarray,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
    """All-pairs verification on (held-out) identities: ROC AUC and mean same/diff cosine.

    Args:
      model: the identity model.
      images: uint8 [N, H, W, C].
      labels: identity labels [N].
      mesh: the devices the embeddings are computed on, data-parallel (batches sharded, the
        embeddings gathered on every process); default all devices of all processes.

    Returns:
      {'auc', 'cos_same', 'cos_diff'}.
    """
    x = np.asarray(images, np.float32) / 127.5 - 1.0
    mesh = parallel.make_mesh() if mesh is None else mesh
    # One batch of at most 256 (a small held-out set is not padded to 256).
    batch = min(256, len(x))
    emb = batching.map_batches(jax.jit(model.embed), x, batch_size=batch, mesh=mesh)
    sim = emb @ emb.T
    iu = np.triu_indices(len(labels), 1)
    s, same = sim[iu], (labels[:, None] == labels[None, :])[iu]
    order = np.argsort(s)
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    n_pos, n_neg = same.sum(), (~same).sum()
    auc = (ranks[same].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1)
    return {
        "auc": float(auc),
        "cos_same": float(s[same].mean()),
        "cos_diff": float(s[~same].mean()),
    }
