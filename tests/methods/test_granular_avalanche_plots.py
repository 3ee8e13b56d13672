"""The analysis figures: PNGs of the documented pixel sizes, drawn from any data (log axes with
non-positive points, empty series, no data at all)."""

import numpy as np
from PIL import Image

from jaxpapers.methods.granular_avalanche import plots


def _png(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return im.size


def test_figure_is_a_png_of_the_requested_size(tmp_path):
    x = np.linspace(0.0, 0.1, 50)
    path = plots.figure(
        str(tmp_path / "stress_strain_rough.png"),
        lines=[("shear stress / P", x, 0.3 + 0.01 * np.sin(200 * x))],
        points=[("detected drops", x[::10], 0.3 + 0.0 * x[::10]), ("large drops", [], [])],
        title="rough: sensor stress vs imposed strain",
        xlabel="strain",
        ylabel="sigma/P",
    )
    assert _png(path) == (720, 460)
    sizes = np.array([0.0, -1.0, 1e-3, 1e-2, 1e-1, np.nan])  # non-positive: left out on log axes
    path = plots.figure(
        str(tmp_path / "drop_sizes_rough.png"),
        points=[("P(drop)", sizes, sizes)],
        logx=True,
        logy=True,
        xlabel="drop / P",
        ylabel="P(drop)",
        size=(400, 300),
    )
    assert _png(path) == (400, 300)
    assert _png(plots.figure(str(tmp_path / "empty.png"), title="nothing")) == (720, 460)


def test_axis_labels_carry_units():
    assert "units of confining pressure" in plots.axis_label("sigma/P")
    assert "particle diameters" in plots.axis_label("xi / d")
    assert plots.axis_label("something else") == "something else"


def test_scatter_map_is_a_png_of_panels_times_size(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 10, (2, 80))
    val = 10.0 ** rng.uniform(-3, 0, 80)
    val[:3] = np.nan
    panels = [("before", x, y, val), ("across", x + 0.1, y, val * 2)]
    path = plots.scatter_map(str(tmp_path / "d2min_slice_rough.png"), panels, -3.0, 0.0, "D2min")
    assert _png(path) == (2 * 360, 400)
