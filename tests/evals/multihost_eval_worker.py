"""One of the two processes of ``test_multihost_eval`` (run as a script, not collected).

Every evaluator runs data-parallel over the 4 devices of both processes and must hand THIS
process the whole result, equal to what its own first device computes alone. Prints one line
with a digest of the results, which both processes must print alike.
"""

import hashlib

from jaxpapers import parallel

parallel.maybe_initialize_distributed()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxpapers import batching  # noqa: E402
from jaxpapers.evals import face_verification as fv  # noqa: E402
from jaxpapers.evals import robust  # noqa: E402
from jaxpapers.evals.gan import feature_nets, metrics  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.devices())
mesh = parallel.make_mesh()
local = parallel.make_mesh(jax.local_devices()[:1])
assert not all(d.process_index == jax.process_index() for d in mesh.devices.flat)
digest = hashlib.sha256()


def same(a, b, tol=0.0):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    digest.update(np.ascontiguousarray(a).tobytes())


# The shared loop: keyed random draws, 13 rows in chunks of 5 (padded to 8 over 4 devices).
key = jax.random.key(1)
draw = jax.jit(lambda k, x: x * 2 + jax.random.uniform(k, x.shape))
x = np.arange(13 * 3, dtype=np.float32).reshape(13, 3)


def fn(i, xb):
    return draw(jax.random.fold_in(key, i), xb)


same(
    batching.map_batches(fn, x, batch_size=5, mesh=mesh, with_start=True),
    batching.map_batches(fn, x, batch_size=5, with_start=True),
)

# Robust accuracy: a cascade of PGD then APGD-CE on a linear model.
w = jax.random.normal(jax.random.key(0), (4, 36))
logits = lambda v: v.reshape(v.shape[0], -1) @ w.T  # noqa: E731
images = np.asarray(jax.random.uniform(jax.random.key(2), (21, 6, 6, 1), minval=0.2, maxval=0.8))
labels = np.asarray(jnp.argmax(logits(images), -1)).astype(np.int32)
kw = dict(
    eps=0.03, attacks_to_run=("pgd", "apgd-ce"), cascade=True, batch_size=8, pgd_steps=5,
    apgd_steps=5,
)  # fmt: skip
res = robust.evaluate(logits, images, labels, jax.random.key(0), mesh=mesh, **kw)
ref = robust.evaluate(logits, images, labels, jax.random.key(0), mesh=local, **kw)
for k in ("clean", "pgd", "apgd-ce", "worst_case"):
    assert res[k] == ref[k], (k, res[k], ref[k])
same(res["pred_adv"], ref["pred_adv"])
same(res["x_adv"], ref["x_adv"], 1e-6)

# GAN features (the shipped FD-FMNIST net), their k-NN precision/recall, face embeddings.
faces = np.random.default_rng(0).integers(0, 256, (11, 28, 28, 1), dtype=np.uint8)
net = feature_nets.fmnist_feature_net()
feats, _ = feature_nets.Extractor(net, batch_size=6, mesh=mesh).array(faces)
feats_local, _ = feature_nets.Extractor(net, batch_size=6, mesh=local).array(faces)
same(feats, feats_local, 1e-5)
rng = np.random.default_rng(1)
real, fake = rng.normal(size=(30, 8)), rng.normal(size=(25, 8)) + 0.3
same(metrics.knn_radii(real, mesh=mesh), metrics.knn_radii(real, mesh=local), 1e-6)
pr = metrics.precision_recall(real, fake, mesh=mesh)
assert pr == metrics.precision_recall(real, fake, mesh=local), pr
same(pr, pr)
embed = jax.jit(lambda v: v.reshape(len(v), -1)[:, :16].astype(jnp.float32) / 255.0)
same(fv.embeddings(embed, faces, batch_size=6, mesh=mesh), np.asarray(embed(faces)))

print(f"process {jax.process_index()}: evaluations agree, digest {digest.hexdigest()}", flush=True)
