"""FROM occlusion patterns, max-IoU labels and occluder pasting."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.lib import occlusion as oc


def _official_grids(h, w, n):
    """Pixel masks built the way FROM's get_grids describes them (for comparison)."""
    xs = np.linspace(0, w, n + 1, True, dtype=int)
    ys = np.linspace(0, h, n + 1, True, dtype=int)
    verts = [(y, x) for y in ys for x in xs]
    grids = [np.zeros((h, w))]
    for s, e in itertools.product(verts, verts):
        if e[0] > s[0] and e[1] > s[1]:
            g = np.zeros((h, w))
            g[s[0] : e[0], s[1] : e[1]] = 1.0
            grids.append(g)
    return grids


@pytest.mark.parametrize("k,count", [(3, 37), (4, 101), (5, 226)])
def test_pattern_count_and_order(k, count):
    assert oc.num_patterns(k) == count
    boxes = oc.pattern_boxes(112, 96, k)
    assert boxes.shape == (count, 4) and np.all(boxes[0] == 0)
    grids = _official_grids(112, 96, k)
    assert len(grids) == count
    for b, g in zip(boxes[::7], grids[::7], strict=True):
        np.testing.assert_array_equal(oc.box_to_mask(b, 112, 96), g)


def test_max_iou_labels_on_hand_made_boxes():
    pats = oc.pattern_boxes(112, 96, 4)  # x cuts 0,24,48,72,96; y cuts 0,28,56,84,112
    assert tuple(pats[1]) == (0, 0, 28, 24)
    assert tuple(pats[53]) == (28, 24, 56, 48)
    hand = {
        (0, 0, 28, 24): 1,
        (28, 24, 56, 48): 53,
        (27, 25, 57, 47): 53,
        (0, 0, 112, 96): 16,
        (0, 0, 0, 0): 0,
    }
    for box, want in hand.items():
        assert int(oc.pattern_labels(jnp.array(box), pats)) == want
        assert oc.mask_iou_label(oc.box_to_mask(np.array(box), 112, 96), pats) == want
    # Analytic IoU label == official pixel IoU label on random clipped boxes.
    rng = np.random.RandomState(0)
    for _ in range(25):
        y0, y1 = sorted(rng.randint(0, 113, 2))
        x0, x1 = sorted(rng.randint(0, 97, 2))
        if y1 == y0 or x1 == x0:
            continue
        box = np.array([y0, x0, y1, x1])
        assert int(oc.pattern_labels(jnp.asarray(box), pats)) == oc.mask_iou_label(
            oc.box_to_mask(box, 112, 96), pats
        )


def test_paste_box_matches_pasted_pixels_and_clipping():
    img = np.zeros((56, 48, 3), np.uint8)
    occ = np.full((10, 12, 3), 200, np.uint8)
    for center, factor in [((20, 20), 1.0), ((0, 0), 2.0), ((55, 47), 3.5), ((30, 5), 5.0)]:
        out, box = oc.paste_occluder(img, occ, center, factor)
        nh, nw = oc.scaled_size((10, 12), (56, 48), factor)
        assert (nh, nw) == (min(55, int(factor * 10)), min(47, int(factor * 12)))
        np.testing.assert_array_equal(out[..., 0] > 0, oc.box_to_mask(box, 56, 48) > 0)
        sy, sx = center[0] - nh // 2, center[1] - nw // 2
        assert tuple(box) == (
            max(sy, 0),
            max(sx, 0),
            min(center[0] + (nh + 1) // 2, 56),
            min(center[1] + (nw + 1) // 2, 48),
        )


def test_device_paste_equals_numpy_reference():
    occs = oc.procedural_occluders(seed=1, variants=1, image_hw=(56, 48))
    bank = oc.build_bank(occs, (56, 48))
    rng = np.random.RandomState(3)
    img = rng.randint(0, 255, (56, 48, 3)).astype(np.uint8)
    fn = jax.jit(oc.occlude_one)
    for _ in range(6):
        i, j = rng.randint(len(occs)), rng.randint(len(oc.TRAIN_FACTORS))
        c = np.array([rng.randint(56), rng.randint(48)])
        ref, box = oc.paste_occluder(img, occs[i][1], tuple(c), oc.TRAIN_FACTORS[j])
        out, dbox = fn(jnp.asarray(img), bank["canvas"], bank["sizes"], i, j, c, False)
        np.testing.assert_array_equal(np.asarray(out), ref)
        np.testing.assert_array_equal(np.asarray(dbox), box)
    out, dbox = fn(jnp.asarray(img), bank["canvas"], bank["sizes"], 0, 0, c, True)
    np.testing.assert_array_equal(np.asarray(out), img)
    assert np.all(np.asarray(dbox) == 0)


def test_occlude_batch_clean_ratio_labels_and_determinism():
    occs = oc.procedural_occluders(seed=0, variants=1, image_hw=(28, 24))
    bank = oc.build_bank(occs, (28, 24))
    pats = oc.pattern_boxes(28, 24, 4)
    imgs = jnp.zeros((600, 28, 24, 3), jnp.uint8)
    f = jax.jit(lambda k: oc.occlude_batch(k, imgs, bank, 3, pats))
    out, boxes, labels = f(jax.random.key(0))
    clean = np.all(np.asarray(boxes) == 0, axis=1)
    assert abs(clean.mean() - 1 / 3) < 0.06
    assert np.all(np.asarray(labels)[clean] == 0) and np.all(np.asarray(labels)[~clean] > 0)
    assert np.all(np.asarray(out)[clean] == 0)
    np.testing.assert_array_equal(labels, oc.pattern_labels(boxes, pats))
    np.testing.assert_array_equal(f(jax.random.key(0))[0], out)


def test_occlude_dataset_deterministic_and_regions():
    occs = oc.procedural_occluders(seed=0, variants=2, image_hw=(112, 96), grayscale=True)
    assert len(occs) == 18 and {n for n, _ in occs} == set(oc.OCCLUDER_CLASSES)
    assert all(o.dtype == np.uint8 and o.shape[2] == 3 for _, o in occs)
    assert np.all(occs[0][1][..., 0] == occs[0][1][..., 1])  # grey
    imgs = np.random.RandomState(0).randint(0, 255, (5, 112, 96, 3)).astype(np.uint8)
    a, ba = oc.occlude_dataset(imgs, occs, seed=100)
    b, bb = oc.occlude_dataset(imgs, occs, seed=100)
    c, _ = oc.occlude_dataset(imgs, occs, seed=101)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(a, c)
    r, br = oc.occlude_dataset(imgs, occs, region="nose")
    assert tuple(br[0]) == (48, 34, 86, 62)  # official (x0, y0, x1, y1) = (34, 48, 62, 86)
    outside = oc.box_to_mask(br[0], 112, 96) == 0
    np.testing.assert_array_equal(r[0][outside], imgs[0][outside])
    with pytest.raises(FileNotFoundError):
        oc.load_occluders("/nonexistent/occluders")
