"""Figures drawn faster must be the same figures: pixels, limits and PNG metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ptqdebug.analyses.distribution import Distribution
from ptqdebug.plots import (
    accumulate_error_figure,
    channel_boxes_figure,
    distribution_figure,
    partial_quantization_figure,
    stat_info_figure,
)
from ptqdebug.plots.png import encode_png
from tests.plots.helpers import (
    activation_distribution,
    make_accumulate,
    make_boxes,
    make_partial,
    make_stats,
)


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGBA"
        return np.asarray(im)


def _both(fig, **kwargs) -> tuple[bytes, bytes]:  # noqa: ANN001
    """The figure saved by ptqdebug's canvas and by matplotlib's own Agg canvas (Pillow)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    ours = io.BytesIO()
    fig.savefig(ours, format="png", **kwargs)
    theirs = io.BytesIO()
    FigureCanvasAgg(fig).print_figure(theirs, format="png", **kwargs)
    return ours.getvalue(), theirs.getvalue()


def _weight_distribution() -> Distribution:
    rng = np.random.default_rng(1)
    w = rng.normal(size=5000).astype(np.float32)
    wq = np.round(w * 20) / 20
    return Distribution("w_q", "weight", "w", {"float": w, "quantized": wq.astype(np.float32)}, float(np.abs(w).max()),
                        cosine=0.999)


@pytest.mark.parametrize("make", [
    lambda: distribution_figure(_weight_distribution()),
    lambda: distribution_figure(activation_distribution(np.linspace(-3, 5, 999), threshold=2.0)),
    lambda: channel_boxes_figure(make_boxes(300)),
    lambda: accumulate_error_figure(make_accumulate({"a": [1, 0.99, 0.97], "b": [1, 0.999, 0.99]})),
    lambda: partial_quantization_figure(make_partial()),
    lambda: stat_info_figure(make_stats(), "weight"),
])
def test_png_canvas_writes_matplotlibs_pixels(make) -> None:  # noqa: ANN001
    fig = make()
    from ptqdebug.plots._base import FIXED_LAYOUT

    ours, theirs = _both(fig, bbox_inches=None if fig.get_label() == FIXED_LAYOUT else "tight")
    np.testing.assert_array_equal(_pixels(ours), _pixels(theirs))


def test_png_metadata_as_matplotlib_writes_it() -> None:
    from PIL import Image

    ours, theirs = _both(partial_quantization_figure(make_partial()))
    with Image.open(io.BytesIO(ours)) as a, Image.open(io.BytesIO(theirs)) as b:
        assert a.size == b.size
        assert a.info["Software"] == b.info["Software"]
        assert a.info["dpi"] == pytest.approx(b.info["dpi"])


def test_encode_png_round_trips_and_checks_its_input() -> None:
    rgba = np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(_pixels(encode_png(rgba, 100.0, {"Software": "x"})), rgba)
    with pytest.raises(ValueError):
        encode_png(rgba[..., :3], 100.0)


def test_histogram_limits_as_axes_stairs_sets_them() -> None:
    """distribution_figure adds its stairs without Axes.stairs' per-segment limit walk: the data
    and view limits must be what Axes.stairs gives."""
    from matplotlib.figure import Figure

    d = _weight_distribution()
    ax = distribution_figure(d).axes[0]
    ref = Figure().add_subplot()
    for key in ("float", "quantized"):
        patch = next(a for a in ax.get_children() if a.get_gid() == f"hist:{key}")
        data = patch.get_data()
        ref.stairs(data.values, data.edges, fill=True)
    ref.scatter([d.abs_max], [0], clip_on=False)
    np.testing.assert_array_equal(ax.dataLim.get_points(), ref.dataLim.get_points())
    assert ax.get_xlim() == ref.get_xlim() and ax.get_ylim() == ref.get_ylim()
