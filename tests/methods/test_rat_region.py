"""RAT region sampling and distance-aware label smoothing against their formulas (README)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.methods.rat import region

EPS = 0.1


@pytest.fixture(scope="module")
def toy_path():
    """A hand-made L∞ path in the ε-ball: x = 0.5, iterates at fixed offsets."""
    x = jnp.full((3, 2, 2, 1), 0.5)
    offs = jnp.array([0.03, -0.05, 0.08, 0.1])  # x_0 … x_3 (per-node uniform offsets)
    signs = jnp.array([1, -1, 1])[None, :, None, None, None]
    path = x[None] + offs[:, None, None, None, None] * signs
    return x, path


@pytest.mark.parametrize("name", region.REGIONS)
def test_samples_lie_in_the_region_and_the_ball(toy_path, name):
    x, path = toy_path
    s = jax.jit(
        lambda k: region.sample_region(
            k, x, path, eps=EPS, region=name, num_samples=64, tube_radius=0.25
        )
    )(jax.random.key(0))
    assert s.shape == (64,) + x.shape
    d = s - x[None]
    assert float(jnp.max(jnp.abs(d))) <= EPS + 1e-6
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    nodes = region.path_nodes(x, path, include_clean=True)  # offsets 0, .03, −.05, .08, .1
    if name in ("segments", "hull"):
        # Every pixel of an example moves by the same offset, which must lie in [min, max] of
        # the node offsets (convex combinations of 1-D points), and not only at the nodes.
        off = d[..., 0, 0, 0] * jnp.array([1, -1, 1])[None]
        lo, hi = float(jnp.min(nodes - x[None])), float(jnp.max(nodes - x[None]))
        assert float(off.min()) >= -0.05 - 1e-6 and float(off.max()) <= 0.1 + 1e-6
        assert lo == pytest.approx(-0.1) and hi == pytest.approx(0.1)  # sign-flipped row
        flat = np.asarray(d.reshape(64, 3, -1))
        assert np.allclose(flat, flat[..., :1], atol=1e-6)  # stays on the 1-D path
    if name == "segments":
        # A segments sample lies between two consecutive nodes.
        off0 = np.asarray(off[:, 0])
        node_off = [0.0, 0.03, -0.05, 0.08, 0.1]
        between = [
            min(a, b) - 1e-6 <= o <= max(a, b) + 1e-6
            for o in off0
            for a, b in [tuple(node_off[i : i + 2]) for i in range(4)]
        ]
        assert np.asarray(between).reshape(64, 4).any(-1).all()
    if name == "tube":
        # The noise leaves the 1-D path.
        flat = np.asarray(d.reshape(64, 3, -1))
        assert not np.allclose(flat, flat[..., :1], atol=1e-4)


def test_include_endpoint_and_without_clean(toy_path):
    x, path = toy_path
    s = region.sample_region(
        jax.random.key(1),
        x,
        path,
        eps=EPS,
        num_samples=2,
        include_endpoint=True,
        include_clean=False,
    )
    np.testing.assert_array_equal(s[0], path[-1])
    off = np.asarray((s[1] - x)[:, 0, 0, 0] * jnp.array([1, -1, 1]))
    assert (off >= -0.05 - 1e-6).all() and (off <= 0.1 + 1e-6).all()
    with pytest.raises(ValueError, match="region must be"):
        region.sample_region(jax.random.key(1), x, path, eps=EPS, region="ball")


def test_distance_and_label_smoothing_formulas(toy_path):
    x, path = toy_path
    samples = jnp.stack([x + 0.05, jnp.clip(x - 0.1, 0, 1), x])  # d∞/ε = 0.5, 1, 0
    d = region.normalized_distance(x, samples, path, eps=EPS, distance="linf_eps")
    np.testing.assert_allclose(d, [[0.5] * 3, [1.0] * 3, [0.0] * 3], atol=1e-6)
    # L2 normalised by the farthest path node (‖0.1·1‖₂ = 0.1·2 for 4 pixels).
    d2 = region.normalized_distance(x, samples, path, eps=EPS, distance="l2_path")
    np.testing.assert_allclose(d2[0], 0.5, atol=1e-6)
    s_far = region.smoothing_amount(d, s_max=0.2)
    np.testing.assert_allclose(s_far[:, 0], [0.1, 0.2, 0.0], atol=1e-7)
    s_near = region.smoothing_amount(d, s_max=0.2, power=2.0, direction="near_more")
    np.testing.assert_allclose(s_near[:, 0], [0.05, 0.0, 0.2], atol=1e-7)
    q = region.smoothed_targets(jnp.array([2]), jnp.array([0.1]), 5)
    np.testing.assert_allclose(q, [[0.025, 0.025, 0.9, 0.025, 0.025]], atol=1e-7)
