"""Plots and labelled image tables: what a reader sees (titles, labels, ticks, legends, empty
data) checked on the matplotlib figure, plus the PNG on disk; the attack example grid."""

import numpy as np
import pytest
from PIL import Image

from jaxpapers import viz
from jaxpapers.evals import robust


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


def test_save_plot_writes_png_of_requested_size(tmp_path):
    path = viz.save_plot(
        str(tmp_path / "p.png"), {"a": ([0, 1, 2], [1, 4, 9])}, title="T", xlabel="x", ylabel="y"
    )
    with Image.open(path) as img:
        assert img.size == (640, 420) and img.format == "PNG"
        arr = np.asarray(img.convert("RGB"))
    assert (arr < 128).any() and (arr > 200).any()  # something drawn on a white page
    assert not list(tmp_path.glob("*.tmp-*"))  # atomic write leaves no temp file


def test_plot_labels_ticks_and_legend_without_repeats():
    x = np.linspace(0, 10, 50)
    fig = viz.plot_figure(
        {"train": (x, x**2), "test": (x, x), "train ": ([], [])},
        title="loss",
        xlabel="step",
        ylabel="value",
    )
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("loss", "step", "value")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train", "test", "train  (no data)"]
    assert len(labels) == len(set(labels))
    assert 3 <= len(ax.get_xticks()) <= 8  # a handful of readable ticks


def test_log_axes_read_as_powers_of_ten():
    far = np.logspace(-5, 0, 40)
    fig = viz.plot_figure(
        {
            "roc": (
                np.concatenate([[0.0, -1.0, np.nan], far]),
                np.concatenate([[0.1, 0.2, 0.3], far]),
            )
        },
        xlabel="FAR",
        ylabel="TAR",
        xscale="log",
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert any("10^{-3}" in t for t in ticks), ticks
    # Only the positive, finite points are plotted on the log axis.
    (line,) = ax.get_lines()
    assert len(line.get_xdata()) == 40


def test_empty_plot_says_no_data(tmp_path):
    fig = viz.plot_figure({"a": ([], []), "b": ([np.nan], [1.0])}, title="nothing yet")
    assert "no data" in _texts(fig)
    assert viz.save_plot(str(tmp_path / "e.png"), {}, title="empty")  # no series at all


def test_image_table_cells_titles_and_notes():
    img = np.random.default_rng(0).random((6, 6, 1)).astype(np.float32)
    fig = viz.image_table_figure(
        [[img, img], [img, None]],
        ["clean", "adversarial"],
        [["true 1", "true 2"], ["pred 3", "robust"]],
        title="grid",
    )
    texts = _texts(fig)
    assert {"true 1", "true 2", "pred 3", "robust", "clean", "adversarial", "grid"} <= set(texts)
    assert len([a for a in fig.axes if a.images]) == 3


def test_attack_examples_skip_wrong_points_and_label_classes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.random((6, 4, 4, 1)).astype(np.float32)
    eps = 0.1
    x_adv = x.copy()
    x_adv[1] = np.clip(x[1] + eps * np.sign(rng.normal(size=x[1].shape)), 0, 1)
    result = {
        "clean": 5 / 6,
        "worst_case": 4 / 6,
        "x_adv": x_adv,
        "y": np.array([0, 1, 2, 3, 4, 5]),
        "pred_clean": np.array([9, 1, 2, 3, 4, 5]),  # point 0 is wrong before any attack
        "pred_adv": np.array([9, 7, 2, 3, 4, 5]),  # point 1 fooled (-> 7), others robust
    }
    seen = {}
    monkeypatch.setattr(
        viz, "save_image_table", lambda path, *a, **k: seen.update(args=a, kw=k) or path
    )
    robust.save(result, str(tmp_path), x, eps, num_pictures=3)
    cells, rows, titles, colors = seen["args"]
    assert rows[0] == "clean" and rows[1] == "adversarial" and "ε" in rows[2]
    assert titles[0] == ["true 1, pred 1", "true 2, pred 2", "true 3, pred 3"]  # point 0 skipped
    assert titles[1][0] == "pred 7 (fooled)" and "robust" in titles[1][1]
    assert cells[1][1] is None and cells[2][1] is None  # no blank grey perturbation tile
    pert = cells[2][0]
    np.testing.assert_allclose(pert, np.clip(0.5 + (x_adv[1] - x[1]) / (2 * eps), 0, 1))
    assert "ε = 0.1" in seen["kw"]["title"] and "1 of 6 misclassified" in seen["kw"]["title"]
    monkeypatch.undo()
    path = robust.save_examples(str(tmp_path / "ex.png"), result, x, eps, num=3)
    with Image.open(path) as img:
        assert img.size[0] > img.size[1] > 100
    import json

    table = json.loads((tmp_path / "robust.json").read_text())
    assert table == {"clean": pytest.approx(5 / 6), "worst_case": pytest.approx(4 / 6)}
