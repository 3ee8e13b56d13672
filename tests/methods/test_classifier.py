"""The classifier method: jit invariants, augmentation and evaluation behave as documented."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import config_lib
from jaxpapers.lib import augment
from jaxpapers.methods.classifier import steps


def smoke():
    return config_lib.load_config_file("configs/classifier.py", "smoke")


def test_classifier_train_step_jit(jit_check):
    _, metrics = jit_check("classifier", smoke())
    assert 0.0 <= float(metrics[-1]["accuracy"]) <= 1.0


def test_label_smoothing_cross_entropy_matches_formula():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    labels = jnp.array([0])
    p = jax.nn.log_softmax(logits)[0]
    s = 0.3
    expected = -((1 - s + s / 3) * p[0] + s / 3 * p[1] + s / 3 * p[2])
    np.testing.assert_allclose(steps.cross_entropy(logits, labels, 3, s), expected, rtol=1e-6)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1) + 1
    y = augment.random_crop(jax.random.PRNGKey(0), x, pad=1)
    assert y.shape == x.shape
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i in range(2):
        windows = [padded[i, a : a + 4, b : b + 4] for a in range(3) for b in range(3)]
        assert any(np.array_equal(np.asarray(y[i]), w) for w in windows)


def test_flip_flips_about_half():
    x = jnp.broadcast_to(jnp.arange(4.0)[None, None, :, None], (1000, 1, 4, 1))
    y = augment.random_flip(jax.random.PRNGKey(1), x)
    flipped = np.asarray(y[:, 0, 0, 0] == 3.0)
    assert 400 < flipped.sum() < 600
