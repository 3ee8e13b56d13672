"""The robustness evaluator: cascade semantics, per-attack accounting, table and pictures."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import parallel
from jaxpapers.evals import robust


@pytest.fixture(scope="module")
def linear_problem():
    """A linear 4-class model on 6×6×1 images where the L∞ worst case is known per point."""
    w = jax.random.normal(jax.random.key(0), (4, 36))
    f = lambda x: x.reshape(x.shape[0], -1) @ w.T  # noqa: E731
    x = np.asarray(jax.random.uniform(jax.random.key(1), (40, 6, 6, 1), minval=0.2, maxval=0.8))
    y = np.asarray(jnp.argmax(f(jnp.asarray(x)), -1)).astype(np.int32)
    y[:5] = (y[:5] + 1) % 4  # five points misclassified from the start
    return f, w, x, y


def _flippable(f, w, x, y, eps):
    """Analytic L∞ robustness of a linear model (box inactive): min_j margin_j − ε‖w_y − w_j‖₁."""
    z = np.asarray(f(jnp.asarray(x)))
    wn = np.asarray(w)
    gap = z[np.arange(len(y)), y][:, None] - z
    reach = eps * np.abs(wn[y][:, None, :] - wn[None]).sum(-1)
    reach[np.arange(len(y)), y] = -np.inf
    return (gap < reach).any(-1) | (np.argmax(z, -1) != y)


CASCADE = dict(
    eps=0.03,
    attacks_to_run=("fgsm", "aa_standard"),
    cascade=True,
    batch_size=16,
    apgd_steps=10,
    square_queries=20,
    fab_steps=10,
)


@pytest.fixture(scope="module")
def cascade(linear_problem):
    """AutoAttack's cascade on the default mesh: all 8 (fake) devices."""
    f, _, x, y = linear_problem
    return robust.evaluate(f, x, y, jax.random.key(0), **CASCADE)


def test_cascade_counts_robust_only_if_every_attack_fails(linear_problem, cascade, tmp_path):
    f, w, x, y = linear_problem
    eps = CASCADE["eps"]
    res = cascade
    assert res["clean"] == pytest.approx(35 / 40)
    # Cascade: robust accuracy never increases along the sequence, worst case = the last one.
    seq = [res["clean"], res["fgsm"], res["apgd-ce"], res["apgd-t"], res["fab-t"], res["square"]]
    assert all(a >= b for a, b in zip(seq, seq[1:], strict=False))
    assert res["worst_case"] == seq[-1]
    # Against the analytic answer: APGD finds every flippable point of a linear model, and no
    # attack can beat the analytic worst case.
    expected = 1.0 - _flippable(f, w, x, y, eps).mean()
    assert res["worst_case"] == pytest.approx(expected)
    adv = res["x_adv"]
    assert np.abs(adv - x).max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    wrong = np.argmax(np.asarray(f(jnp.asarray(adv))), -1) != y
    assert wrong.mean() == pytest.approx(1 - res["worst_case"])
    robust.save(res, str(tmp_path), x, eps, num_pictures=4)
    with open(os.path.join(tmp_path, "robust.json")) as fh:
        table = json.load(fh)
    assert table["worst_case"] == res["worst_case"] and "x_adv" not in table
    assert os.path.getsize(os.path.join(tmp_path, "robust_examples.png")) > 0
    assert "fab-t" in robust.format_table(res)


def test_attacks_alone_and_worst_case_is_the_intersection(linear_problem):
    f, w, x, y = linear_problem
    res = robust.evaluate(
        f,
        x,
        y,
        jax.random.key(0),
        eps=0.03,
        attacks_to_run=("fgsm", "pgd"),
        cascade=False,
        batch_size=64,
        pgd_steps=10,
    )
    assert res["worst_case"] <= min(res["fgsm"], res["pgd"])
    assert res["pgd"] <= res["fgsm"]  # PGD-10 contains the FGSM direction on a linear model
    with pytest.raises(ValueError, match="unknown attack"):
        robust.evaluate(f, x, y, jax.random.key(0), eps=0.03, attacks_to_run=("deepfool",))


def test_batched_uses_equal_batches_and_keeps_order():
    seen = []

    def fn(xb, yb, k):
        seen.append(xb.shape[0])
        return xb * 2 + yb[:, None]

    x = np.arange(259, dtype=np.float32)[:, None]
    y = np.arange(259, dtype=np.int32) % 3
    out = robust._batched(fn, x, y, jax.random.key(0), 250)
    np.testing.assert_array_equal(out, x * 2 + y[:, None])
    assert seen == [130, 130]  # not 250 + a 250-padded batch of 9
    seen.clear()
    assert robust._batched(fn, x[:7], y[:7], jax.random.key(0), 250).shape == (7, 1)
    assert seen == [7]


def test_sharded_cascade_gives_the_numbers_of_one_device(linear_problem, cascade):
    """The same cascade on one device: every robust flag and prediction is the same (the
    points each attack sees, the batches they are cut into and the keys are those of one
    device; the 8-device batches only gain padding rows at their end)."""
    f, _, x, y = linear_problem
    one = robust.evaluate(
        f, x, y, jax.random.key(0), mesh=parallel.make_mesh(jax.devices()[:1]), **CASCADE
    )
    for k in ("clean", "fgsm", *robust.AA_STANDARD, "worst_case"):
        assert one[k] == cascade[k], k
    np.testing.assert_array_equal(one["pred_clean"], cascade["pred_clean"])
    np.testing.assert_array_equal(one["pred_adv"], cascade["pred_adv"])
    np.testing.assert_allclose(one["x_adv"], cascade["x_adv"], atol=1e-6)


def test_batched_on_a_mesh_keeps_batches_and_keys():
    """259 points in batches of 130 (each padded to 136 over 8 devices): a random attack-like
    function gives exactly the numbers it gives unsharded (a key per batch, as on one device)."""
    fn = jax.jit(lambda xb, yb, k: xb + jax.random.uniform(k, xb.shape) + yb[:, None])
    x = np.arange(259, dtype=np.float32)[:, None]
    y = np.arange(259, dtype=np.int32) % 3
    want = robust._batched(fn, x, y, jax.random.key(0), 250)
    got = robust._batched(fn, x, y, jax.random.key(0), 250, parallel.make_mesh())
    np.testing.assert_array_equal(got, want)
