"""Figures: structure (lines, labels, positions, sizes), not pixels."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from ptqdebug.analyses.distribution import Distribution
from ptqdebug.analyses.partial import PartialQuantizationResult
from ptqdebug.plots import (accumulate_error_figure, channel_boxes_figure, distribution_figure, partial_quantization_figure,
                            save_figure, stat_info_figure)
from tests.plots.helpers import HOSTILE, activation_distribution, make_accumulate, make_boxes, make_partial, make_stats

PNG = b"\x89PNG\r\n\x1a\n"


def ax_of(fig):  # noqa: ANN001, ANN201
    (ax,) = fig.axes
    return ax


def legend_texts(ax) -> list[str]:  # noqa: ANN001
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def by_gid(ax, gid: str) -> list:  # noqa: ANN001
    return [a for a in ax.get_children() if a.get_gid() == gid]


def nonfinite_points(ax) -> list[tuple[float, float]]:  # noqa: ANN001
    return [tuple(p) for c in by_gid(ax, "nonfinite") for p in c.get_offsets()]


def render(fig, tmp_path: Path, name: str = "f.png") -> Path:  # noqa: ANN001
    path = save_figure(fig, tmp_path / name)
    assert path.read_bytes()[:8] == PNG
    return path


# --------------------------------------------------------------------------- imports


def test_plots_and_report_import_no_matplotlib_and_never_pyplot() -> None:
    code = (
        "import sys, ptqdebug, ptqdebug.plots, ptqdebug.report.html;"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'matplotlib imported';"
        "from tests.plots.helpers import make_accumulate, make_boxes, make_partial, make_stats, activation_distribution;"
        "import ptqdebug.plots as p;"
        "figs = [p.accumulate_error_figure(make_accumulate({'a': [1, 0.9]})), p.channel_boxes_figure(make_boxes(3)),"
        " p.partial_quantization_figure(make_partial()), p.stat_info_figure(make_stats(), 'weight'),"
        " p.distribution_figure(activation_distribution([1.0, -2.0]))];"
        "[f.canvas.draw() for f in figs];"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- accumulate error


def test_accumulate_one_labelled_line_per_curve_and_axis_texts() -> None:
    r = make_accumulate({"weight_activation_calibrated": [1, 0.99, 0.98], "only_weight_calibrated": [1, 0.995, 0.99]})
    ax = ax_of(accumulate_error_figure(r))
    assert [ln.get_label() for ln in ax.get_lines()] == ["weight_activation_calibrated", "only_weight_calibrated"]
    assert ax.get_xlabel() == "node index"
    assert ax.get_ylabel() == "cosine-similarity"
    assert ax.get_title() == "weight_activation_quantized_separately"
    assert legend_texts(ax) == ["weight_activation_calibrated", "only_weight_calibrated"]
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # outside, on the right


def test_accumulate_nonfinite_values_keep_every_point_at_its_index() -> None:
    vals = [1.0, math.nan, 0.9, math.inf, 0.8, -math.inf, 0.7]
    r = make_accumulate({"c": vals, "d": [1.0] * 7})
    ax = ax_of(accumulate_error_figure(r))
    line = ax.get_lines()[0]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    finite = np.isfinite(y)
    assert list(x[finite]) == [0, 2, 4, 6]
    assert list(y[finite]) == [1.0, 0.9, 0.8, 0.7]
    points = sorted(nonfinite_points(ax))
    assert points == [(1, 0.0), (3, 1.0), (5, 0.0)]  # NaN/-inf on the bottom edge, +inf on the top edge
    assert "non-finite" in legend_texts(ax)
    # the markers do not move the data limits
    lo, hi = ax.get_ylim()
    assert lo > 0.6 and hi < 1.1


def test_accumulate_average_mode_draws_running_mean() -> None:
    r = make_accumulate({"c": [1.0, 0.9, math.nan, 0.8]})
    line = ax_of(accumulate_error_figure(r, average_mode=True)).get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), r.curves[0].running_mean())
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.95, 0.95, 0.9])


def test_accumulate_colours_are_deterministic_and_distinct() -> None:
    curves = {f"c{i}": [1.0, 0.9] for i in range(12)}
    a = [(ln.get_color(), ln.get_linestyle()) for ln in ax_of(accumulate_error_figure(make_accumulate(curves))).get_lines()]
    b = [(ln.get_color(), ln.get_linestyle()) for ln in ax_of(accumulate_error_figure(make_accumulate(curves))).get_lines()]
    assert a == b
    assert len(set(a)) == 12
    assert len({c for c, _ in a[:10]}) == 10


def test_accumulate_x_axis_names_few_points_indices_many() -> None:
    few = make_accumulate({"c": [1.0] * 12})
    ax = ax_of(accumulate_error_figure(few))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(few.nodes)
    assert ax.get_xticklabels()[0].get_rotation() == 90

    many = make_accumulate({"c": list(np.linspace(1, 0.5, 3000))})
    fig = accumulate_error_figure(many)
    ax = ax_of(fig)
    ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 2999.5]
    assert 3 <= len(ticks) <= 15 and all(float(t).is_integer() for t in ticks)
    small_w = accumulate_error_figure(make_accumulate({"c": [1.0] * 5})).get_size_inches()[0]
    mid_w = accumulate_error_figure(make_accumulate({"c": [1.0] * 50})).get_size_inches()[0]
    assert small_w < mid_w <= fig.get_size_inches()[0] <= 24


@pytest.mark.parametrize("curves", [
    {"single": [0.5]},
    {"all_nan": [math.nan] * 5},
    {"all_inf": [math.inf, math.inf]},
    {"empty": []},
    {},
    {"constant": [1.0] * 80},
    {"isolated": [math.nan] * 70 + [0.9] + [math.nan] * 70},
])
def test_accumulate_degenerate_inputs(curves: dict, tmp_path: Path) -> None:
    render(accumulate_error_figure(make_accumulate(curves)), tmp_path)
    render(accumulate_error_figure(make_accumulate(curves), average_mode=True), tmp_path)


def test_accumulate_isolated_point_between_gaps_gets_a_marker() -> None:
    r = make_accumulate({"c": [math.nan] * 70 + [0.9] + [math.nan] * 70})
    line = ax_of(accumulate_error_figure(r)).get_lines()[0]
    assert line.get_marker() == "o"
    assert list(line.get_markevery()) == [70]


def test_untrusted_names_are_drawn_literally(tmp_path: Path) -> None:
    nodes = ["$\\frac{a$", HOSTILE, "_hidden", "x" * 500]
    r = make_accumulate({"_leading_underscore": [1, 0.9, 0.8, 0.7], "$\\alpha$": [1, 1, 1, 1]}, nodes=nodes)
    fig = accumulate_error_figure(r)
    ax = ax_of(fig)
    assert len(legend_texts(ax)) == 2  # a leading "_" would have hidden the entry
    render(fig, tmp_path)  # malformed mathtext would raise while drawing


# --------------------------------------------------------------------------- distributions


def test_activation_histogram_threshold_and_abs_max() -> None:
    x = np.array([0, 0, 0, 1.5, -0.5, 2.5, 3.0], np.float32)
    ax = ax_of(distribution_figure(activation_distribution(x, threshold=2.0)))
    (hist,) = by_gid(ax, "hist:input")
    assert hist.get_label() == "Input data distribution"
    assert hist.get_facecolor()[:3] == pytest.approx((0x99 / 255, 1.0, 0xBB / 255))
    assert len(hist.get_data().values) == 1024
    assert hist.get_data().values.sum() == 4  # exact zeros removed
    assert sorted(ln.get_xdata()[0] for ln in by_gid(ax, "threshold")) == [-2.0, 2.0]  # data has negatives
    (am,) = by_gid(ax, "abs_max")
    assert tuple(am.get_offsets()[0]) == (3.0, 0.0)
    assert ax.get_title() == "act_q activation distribution"
    assert ax.get_xlabel() == "data range" and ax.get_ylabel() == "Total number of data"
    assert legend_texts(ax)[0] == "Input data distribution"

    ax = ax_of(distribution_figure(activation_distribution(np.abs(x), threshold=2.0)))
    assert [ln.get_xdata()[0] for ln in by_gid(ax, "threshold")] == [2.0]  # no negatives: +threshold only


def test_an_asymmetric_range_is_marked_at_its_own_ends() -> None:
    """uint8/int8 activations are asymmetric by default (ONNX Runtime): the lines mark [min, max],
    not ±max as a single threshold would."""
    x = np.array([-0.8, 0.5, 2.5, 3.2], np.float32)
    d = activation_distribution(x, threshold=3.0)
    d = Distribution(d.name, d.kind, d.tensor, d.values, d.abs_max, threshold=3.0, clip=(-1.0, 3.0))
    ax = ax_of(distribution_figure(d))
    assert sorted(ln.get_xdata()[0] for ln in by_gid(ax, "threshold")) == [-1.0, 3.0]
    assert "range [-1, 3]" in legend_texts(ax)


def test_weight_histogram_uses_the_given_quantized_values() -> None:
    w = np.array([0.0, 0.013, -0.02, 0.5, -0.49, 0.25], np.float32)
    wq = np.array([0.0, 0.0, -0.0196, 0.5, -0.49, 0.248], np.float32)
    d = Distribution("w_q", "weight", "w", {"float": w, "quantized": wq}, 0.5, threshold=0.5, cosine=0.9991234)
    ax = ax_of(distribution_figure(d))
    before, after = by_gid(ax, "hist:float")[0], by_gid(ax, "hist:quantized")[0]
    assert (before.get_label(), after.get_label()) == ("Before calibration", "After calibration")
    assert after.get_facecolor()[:3] == pytest.approx((0xFA / 255, 0x80 / 255, 0x72 / 255))
    nz = wq[w != 0]  # where the float weight is 0, left out of both; 0.013 rounded to 0 stays
    edges = after.get_data().edges
    expected, _ = np.histogram(nz, bins=1024, range=(edges[0], edges[-1]))
    np.testing.assert_array_equal(after.get_data().values, expected)
    assert after.get_data().values.sum() == 5 and before.get_data().values.sum() == 5
    assert ax.get_title() == "w_q weight distribution\ncosine-similarity:0.999123"
    assert not by_gid(ax, "threshold")  # the line is for activation nodes only


def test_node_histogram_keeps_zeros_in_the_error_series() -> None:
    f = np.array([0.0, 1.0, 2.0, -1.0], np.float32)
    q = np.array([0.0, 1.0, 2.5, -1.0], np.float32)
    d = Distribution("/l1/Relu", "node", "relu_out", {"float": f, "quantized": q, "error": f - q}, 2.0, cosine=0.99)
    ax = ax_of(distribution_figure(d))
    labels = [by_gid(ax, f"hist:{k}")[0].get_label() for k in ("float", "quantized", "error")]
    assert labels == ["Before calibration", "After calibration", "Quantization error distribution"]
    err = by_gid(ax, "hist:error")[0]
    assert err.get_data().values.sum() == 4
    assert err.get_facecolor()[:3] == pytest.approx((0x33 / 255, 0xA1 / 255, 0xC9 / 255))
    assert ax.get_title() == "/l1/Relu output:relu_out distribution\ncosine-similarity:0.990000"


@pytest.mark.parametrize("x", [np.zeros(10), np.full(10, 3.0), np.array([7.0]), np.array([np.nan, 1.0, np.inf]),
                               np.zeros(0), np.array([np.nan, np.nan])])
def test_distribution_degenerate_inputs(x: np.ndarray, tmp_path: Path) -> None:
    d = activation_distribution(np.nan_to_num(x, nan=0.0, posinf=0.0), threshold=1.0)
    d = Distribution(d.name, d.kind, d.tensor, {"input": x.astype(np.float32)}, d.abs_max, threshold=1.0)
    fig = distribution_figure(d)
    texts = legend_texts(ax_of(fig))
    if not np.any(np.isfinite(x) & (x != 0)):
        assert any("no non-zero values" in t for t in texts)
    if np.any(~np.isfinite(x)):
        assert any("non-finite not shown" in t for t in texts)
    render(fig, tmp_path)


# --------------------------------------------------------------------------- channel boxes


def rgb(artist) -> tuple[float, ...]:  # noqa: ANN001
    from matplotlib.colors import to_rgba_array

    color = artist.get_edgecolor() if hasattr(artist, "get_path") else artist.get_color()
    return tuple(float(v) for v in to_rgba_array(color)[0][:3])


def segments(artist) -> np.ndarray:  # noqa: ANN001
    """The line segments ``(N, 2, 2)`` of a part drawn as one path of moves and lines."""
    path = artist.get_path()
    assert list(path.codes[:2]) == [path.MOVETO, path.LINETO] and len(path.vertices) % 2 == 0
    return path.vertices.reshape(-1, 2, 2)


def dashed(artist) -> bool:  # noqa: ANN001
    style = artist.get_linestyle()
    return style == "--" if isinstance(style, str) else style[0][1] is not None


def median_segments(ax) -> int:  # noqa: ANN001
    return sum(len(segments(a)) for a in by_gid(ax, "median"))


@pytest.mark.parametrize("channels", [16, 2000])
def test_channel_boxes_one_box_per_channel_with_original_styles(channels: int) -> None:
    b = make_boxes(channels)
    fig = channel_boxes_figure(b)
    ax = ax_of(fig)
    assert median_segments(ax) == channels
    assert len(ax.get_children()) < 30  # one artist per part, not eight per channel
    assert ax.get_xlabel() == "channel" and ax.get_ylabel() == "Range of data in channel"
    med, mean, fl = by_gid(ax, "median")[0], by_gid(ax, "mean")[0], by_gid(ax, "fliers")[0]
    assert rgb(med) == (1, 0, 0) and rgb(mean) == (0, 0, 1)
    assert dashed(mean) and not dashed(med)
    assert fl.get_marker() == "o" and fl.get_markerfacecolor() == "red"
    ticks = [int(t) for t in ax.get_xticks()]
    assert ticks[0] == 1 and max(ticks) <= channels  # 1-based channel positions
    assert len(ticks) <= fig.get_size_inches()[0] / 0.12


def test_channel_boxes_draw_the_given_statistics() -> None:
    b = make_boxes(5)
    ax = ax_of(channel_boxes_figure(b))
    ((med,), (mean,), (box,)) = by_gid(ax, "median"), by_gid(ax, "mean"), by_gid(ax, "box")
    segs = segments(med)
    assert [s[0][0] + 0.25 for s in segs] == pytest.approx([1, 2, 3, 4, 5])  # centred on 1-based positions
    assert [s[0][1] for s in segs] == pytest.approx(list(b.median))
    assert [s[0][1] for s in segments(mean)] == pytest.approx(list(b.mean))
    paths = box.get_paths()
    assert [p.vertices[:, 1].min() for p in paths] == pytest.approx(list(b.q1))
    assert [p.vertices[:, 1].max() for p in paths] == pytest.approx(list(b.q3))
    whiskers = segments(by_gid(ax, "whisker")[0])
    ends = sorted(min(s[0][1], s[1][1]) for s in whiskers[:5])
    assert ends == pytest.approx(sorted(b.whislo))
    fl = by_gid(ax, "fliers")[0]
    assert len(fl.get_xdata()) == sum(len(f) for f in b.fliers)


def test_channel_boxes_width_is_bounded_and_labels_thinned() -> None:
    big = channel_boxes_figure(make_boxes(2000))
    assert big.get_size_inches()[0] == 32
    ax = ax_of(big)
    labels = ax.get_xticklabels()
    assert len(labels) <= 64 and labels[0].get_rotation() == 90
    assert channel_boxes_figure(make_boxes(1)).get_size_inches()[0] == 6
    assert 6 < channel_boxes_figure(make_boxes(100)).get_size_inches()[0] < 60


def test_channels_of_one_value_are_dots() -> None:
    b = make_boxes(6, per_channel=1)  # a pooled output of one sample
    ax = ax_of(channel_boxes_figure(b))
    (dots,) = by_gid(ax, "values")
    assert list(dots.get_xdata()) == [1, 2, 3, 4, 5, 6] and list(dots.get_ydata()) == pytest.approx(list(b.median))
    assert not by_gid(ax, "box") and not by_gid(ax, "median")
    assert "one value per channel" in ax.get_title()
    assert [int(t) for t in ax.get_xticks()] == [1, 2, 3, 4, 5, 6] and ax.get_xlim() == (0.5, 6.5)  # the channels, 1-based
    assert not by_gid(ax_of(channel_boxes_figure(make_boxes(6))), "values")  # (boxes where channels vary)


def test_figures_of_data_with_non_finite_and_huge_values_draw(tmp_path: Path) -> None:
    """A text model's attention mask: values at float32's limit and -inf. The histogram bins are
    computed in float64 (float32 bins overflowed: "Too many bins"), and the box plot leaves the
    non-finite values out, saying how many, and marks a channel of none."""
    from ptqdebug.analyses.distribution import Distribution, _boxes

    mask = np.zeros((2, 24), np.float32)
    mask[:, 20:] = np.finfo(np.float32).min
    d = Distribution("mask_q", "activation", "mask", {"input": mask.ravel()}, float(np.abs(mask).max()), threshold=3.4e38)
    render(distribution_figure(d), tmp_path)
    data = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    data[1, :5], data[2, :] = -np.inf, np.nan
    b = _boxes("att_q", "activation", "att", data, 0)
    ax = ax_of(channel_boxes_figure(b))
    assert "55 non-finite values left out" in ax.get_title()
    assert nonfinite_points(ax) == [(3.0, 0.0)]  # channel 3 (1-based) has no finite value
    render(channel_boxes_figure(b), tmp_path)


def test_channel_boxes_degenerate(tmp_path: Path) -> None:
    render(channel_boxes_figure(make_boxes(1)), tmp_path)
    b = make_boxes(4, per_channel=1)  # constant channels: zero-height boxes
    render(channel_boxes_figure(b), tmp_path)
    b = make_boxes(3)
    nan = np.array([np.nan, 0.0, 0.0])
    b = type(b)(b.name, b.kind, b.tensor, b.axis, b.q1 + nan, b.median + nan, b.q3 + nan, b.mean + nan, b.whislo + nan,
                b.whishi + nan, b.minimum, b.maximum, b.fliers)
    ax = ax_of(channel_boxes_figure(b))
    assert [p[0] for p in nonfinite_points(ax)] == [1]
    render(ax.figure, tmp_path)
    # the figure keeps fixed margins (not cropped to its drawing): the legend must lie inside it
    fig = channel_boxes_figure(b)
    fig.canvas.draw()
    legend, box = ax_of(fig).get_legend().get_window_extent(), fig.bbox
    assert box.x0 <= legend.x0 and legend.x1 <= box.x1 and box.y0 <= legend.y0 and legend.y1 <= box.y1


# --------------------------------------------------------------------------- partial quantization


def test_partial_quantization_lines_labels_and_positions() -> None:
    r = make_partial(nodes=("none", "dup", "dup"), single=(0.97, math.nan, 0.99), partial=(0.975, 0.99, 0.995))
    ax = ax_of(partial_quantization_figure(r))
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"baseline", "partial quantization cumulative error", "per-node quantization sensitivity"}
    assert lines["baseline"].get_ydata()[0] == 1.0 and lines["baseline"].get_linestyle() == "--"
    assert list(lines["partial quantization cumulative error"].get_ydata()) == [0.95, 0.975, 0.99, 0.995]
    single = lines["per-node quantization sensitivity"]
    assert single.get_marker() == "x"
    y = np.asarray(single.get_ydata(), float)
    assert list(np.flatnonzero(np.isfinite(y))) == [1, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "none", "dup", "dup"]  # no merged categories
    assert [p[0] for p in nonfinite_points(ax)] == [2]
    assert ax.get_title() == "Partial Quantization Analysis"
    assert ax.get_ylabel() == "Cosine Similarity" and ax.get_xlabel() == "node"


def test_partial_quantization_no_nodes(tmp_path: Path) -> None:
    fig = partial_quantization_figure(make_partial(nodes=(), single=(), partial=()))
    ax = ax_of(fig)
    # scores near 1 are read as such: no "+1" offset above the axis (a reviewer found one)
    assert ax.yaxis.get_major_formatter().get_useOffset() is False
    # the lone "none" point is explained in words
    (note,) = [t for t in ax.texts if t.get_gid() == "nothing-picked"]
    assert "is at or below pick_threshold 0.999" in note.get_text() and "raise the threshold" in note.get_text()
    render(fig, tmp_path)
    mse = ax_of(partial_quantization_figure(PartialQuantizationResult("mse", 0.5, (), 0.2, (), (), 1)))
    assert "mse is at or above pick_threshold 0.5" in next(t.get_text() for t in mse.texts)
    whole = ax_of(partial_quantization_figure(PartialQuantizationResult("cosine-similarity", 0.999, (), 0.9, (), (), 1, left_out=("only",))))
    assert "only left out: with them in float" in next(t.get_text() for t in whole.texts)
    scored = ax_of(partial_quantization_figure(make_partial()))
    assert not scored.texts


# --------------------------------------------------------------------------- stat info


def test_stat_info_four_log_curves_per_type() -> None:
    stats = make_stats(6)
    ax = ax_of(stat_info_figure(stats, "weight"))
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["Thresholds", "Scales", "Max_vals", "Min_nz_vals"]
    weights = [s for s in stats if s.tensor_type == "weight"]
    assert list(lines["Thresholds"].get_ydata()) == [max(s.thresholds) for s in weights]
    assert list(lines["Max_vals"].get_ydata()) == [max(s.max_vals) for s in weights]
    assert list(lines["Min_nz_vals"].get_ydata()) == [min(s.min_nz_vals) for s in weights]
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "weight calibration nodes"
    assert ax.get_xlabel() == "Node" and ax.get_ylabel() == "Value"
    assert [t.get_text() for t in ax.get_xticklabels()] == [s.name for s in weights]
    assert ax_of(stat_info_figure(stats, "feature")).get_title() == "feature calibration nodes"


def test_stat_info_skips_non_positive_values_visibly(tmp_path: Path) -> None:
    from ptqdebug.analyses.stats import CalibrationNodeStats

    stats = [CalibrationNodeStats("a", "feature", "per-tensor", "int8", (1.0,), (0.01,), (1.0,), (0.0,)),
             CalibrationNodeStats("b", "feature", "per-tensor", "int8", (0.0,), (0.0,), (-1.0,), (math.nan,)),
             CalibrationNodeStats("c", "feature", "per-tensor", "int8", (), (), (), ())]
    fig = stat_info_figure(stats, "feature")
    ax = ax_of(fig)
    assert not np.isfinite(ax.get_lines()[0].get_ydata()[1])
    assert [p[0] for p in nonfinite_points(ax)] == [0, 1, 2]  # a: min_nz 0; b: all; c: no values
    assert "not on log axis" in legend_texts(ax)
    render(fig, tmp_path)
    render(stat_info_figure([], "weight"), tmp_path)
    render(stat_info_figure(stats[1:], "feature"), tmp_path)  # nothing positive at all


# --------------------------------------------------------------------------- save_figure


def test_save_figure_writes_png_atomically_and_releases_the_figure(tmp_path: Path) -> None:
    fig = partial_quantization_figure(make_partial())
    ref = weakref.ref(fig)
    target = tmp_path / "sub" / "dir" / "p.png"
    out = save_figure(fig, target)
    assert out == target and target.read_bytes()[:8] == PNG
    assert sorted(p.name for p in target.parent.iterdir()) == ["p.png"]  # no temporary file left
    assert fig.axes == []  # artists and data dropped
    del fig
    gc.collect()
    assert ref() is None


def test_save_figure_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "p.png"
    target.write_bytes(b"old")
    fig = partial_quantization_figure(make_partial())

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk full")

    fig.savefig = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
