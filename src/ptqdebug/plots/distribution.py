"""Histograms of float / quantized values and per-channel box plots (reference §5.2, §5.4).

Histograms follow the original's look: 1024 bins of raw counts, ``#99ffbb`` for the float (or
input) data, ``#FA8072`` for the quantized data, ``#33A1C9`` for the error, a blue triangle at the
float data's absolute maximum and, for activation calibration nodes, a red dashed line at the
threshold. Exact zeros are left out: of an activation's input, and of the float and quantized
series where the *float* value is 0 (a Relu's dead outputs), so that values quantization rounds
to 0 stay in the quantized series (dropping every exact zero left a spike of small float weights
that the quantized series lacked); the error series keeps them all. Differences, on purpose:

* the weight "After calibration" series is the weight exactly as the calibration node computes it
  (the original re-quantized it in Python with a rounding bug, §5.3);
* the threshold lines mark the range the node represents: both ends when the data has negative
  values (the original drew only ``+threshold``, while a quantizer clips both sides), an
  asymmetric node's own ``[min, max]`` (not ``±max``), and for a per-channel node, dotted, its
  narrowest channel's range too (the original drew one threshold);
* the float and quantized series share one set of bins (the original binned each series over its
  own range, so their bars were not comparable); the error series keeps its own, finer, bins;
* non-finite values cannot be binned: they are left out and counted in the legend.

Box plots are drawn from the precomputed statistics of :class:`ChannelBoxes` (the raw data is not
kept), in the style of ``Axes.bxp`` (red median, blue dashed mean line, red-dot fliers, black box,
whiskers and caps) but as one artist per part for all channels. ``Axes.bxp`` itself is not used:
it makes eight artists per box (about 5 s per 2000 channels, 2 s more to save), and it reads every
rcParam, which makes matplotlib resolve its automatic backend by importing ``pyplot`` (and, where a
display exists, a GUI toolkit).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..analyses.distribution import ChannelBoxes, Distribution
from ._base import FIXED_LAYOUT, fmt, mark_nonfinite, new_figure, text

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch, StepPatch

__all__ = ["channel_boxes_figure", "distribution_figure"]

BINS = 1024
FLOAT_COLOR, QUANT_COLOR, ERROR_COLOR = "#99ffbb", "#FA8072", "#33A1C9"
ABS_MAX_COLOR = "#0000FF"
#: At most this many channel labels on a box plot's x axis (every 10th, 20th, 50th ... channel).
#: Each label costs about a millisecond to lay out and draw, and a 32-inch axis reads well with
#: one label per inch.
MAX_CHANNEL_LABELS = 32

# kind -> [(values key, colour, legend label, zeros removed)]
_SERIES: dict[str, list[tuple[str, str, str, bool]]] = {
    "activation": [("input", FLOAT_COLOR, "Input data distribution", True)],
    "weight": [("float", FLOAT_COLOR, "Before calibration", True), ("quantized", QUANT_COLOR, "After calibration", True)],
    "node": [("float", FLOAT_COLOR, "Before calibration", True), ("quantized", QUANT_COLOR, "After calibration", True),
             ("error", ERROR_COLOR, "Quantization error distribution", False)],
}


def _title(d: Distribution) -> str:
    name = text(d.name, 80)
    if d.kind == "activation":
        return f"{name} activation distribution"
    if d.kind == "weight":
        return f"{name} weight distribution\ncosine-similarity:{fmt(d.cosine)}"
    if d.kind == "node":
        return f"{name} output:{text(d.tensor, 80)} distribution\ncosine-similarity:{fmt(d.cosine)}"
    return f"{name} distribution"


def _series_spec(d: Distribution) -> list[tuple[str, str, str, bool]]:
    spec = [s for s in _SERIES.get(d.kind, []) if s[0] in d.values]
    known = {s[0] for s in spec}
    extra = ["#c9c9ff", "#ffd27f", "#b0b0b0"]
    for i, key in enumerate(k for k in d.values if k not in known):
        spec.append((key, extra[i % len(extra)], text(key), key != "error"))
    return spec


def _hist_range(arrays: list[np.ndarray]) -> tuple[float, float] | None:
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return None
    lo, hi = float(min(a.min() for a in arrays)), float(max(a.max() for a in arrays))
    if lo == hi:  # numpy widens one value by ±0.5, nothing at float32's limit (an attention mask's -3.4e38)
        pad = max(abs(lo) * 1e-3, 0.5)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _stairs(ax: Axes, counts: np.ndarray, edges: np.ndarray, color: str, **kwargs: object) -> StepPatch:
    """``ax.stairs(counts, edges, fill=True, color=color, **kwargs)``, minus its cost.

    ``Axes.add_patch`` finds a patch's data limits by walking its path segment by segment in
    Python (about 25 ms for 1024 bins, most of a histogram figure's drawing time). A filled
    stairs path has only straight segments, so its limits are those of its vertices: the same
    ``update_datalim`` call with the same points gives the same limits, hence the same figure.
    """
    from matplotlib.patches import StepPatch

    patch = StepPatch(counts, edges, baseline=0, orientation="vertical", fill=True, linewidth=0, facecolor=color, **kwargs)
    ax.add_artist(patch)
    ax.update_datalim(patch.get_path().vertices)
    cast("list[float]", patch.sticky_edges.y).append(0)  # what Axes.stairs adds for its baseline (typed ArrayLike before matplotlib 3.11)
    ax.update_datalim([(edges[0], 0)])
    ax.autoscale_view()
    return patch


def distribution_figure(d: Distribution) -> Figure:
    """The histogram figure of one :class:`Distribution` (activation, weight or node output)."""
    from matplotlib.patches import Patch

    fig = new_figure(8.0, 6.0)
    fig.set_label(FIXED_LAYOUT)  # margins fit a two-line title and the labels
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.1, top=0.88)
    ax = fig.add_subplot()
    spec = _series_spec(d)
    data: dict[str, np.ndarray] = {}
    dropped: dict[str, int] = {}
    has_negative = False
    # where the float (or input) value is exactly 0, left out of every series that drops zeros
    first = np.asarray(d.values[spec[0][0]]).ravel()
    for key, _, _, drop_zeros in spec:
        x = np.asarray(d.values[key]).ravel()
        if drop_zeros:  # (paired series have the float's shape; otherwise each drops its own zeros)
            x = x[first != 0] if x.shape == first.shape else x[x != 0]
        # float64: the bins of a float32 range near ±3.4e38 (an attention mask) overflow in float32
        x = np.abs(x) if x.dtype.kind == "c" else x.astype(np.float64)
        finite = np.isfinite(x)
        dropped[key] = int(x.size - np.count_nonzero(finite))
        if dropped[key]:
            x = x[finite]
        has_negative |= bool(x.size and x.min() < 0)
        data[key] = x
    shared = _hist_range([data[k] for k, *_ in spec if k != "error"])
    handles: list[Artist] = []
    for key, color, label, _ in spec:
        x = data[key]
        if dropped[key]:
            label = f"{label} ({dropped[key]} non-finite not shown)"
        if not x.size:
            handles.append(Patch(facecolor=color, edgecolor="none", label=f"{label} (no non-zero values)"))
            continue
        rng = shared if key != "error" else _hist_range([x])
        counts, edges = np.histogram(x, bins=BINS, range=rng)
        handles.append(_stairs(ax, counts, edges, color=color, alpha=0.85, label=label, gid=f"hist:{key}"))
    if math.isfinite(d.abs_max):
        handles.append(ax.scatter([d.abs_max], [0], marker="^", color=ABS_MAX_COLOR, zorder=4, clip_on=False,
                                  label=f"abs max {d.abs_max:.6g}", gid="abs_max"))
    if d.kind == "activation":
        handles += _range_lines(ax, d, has_negative)
    ax.set_xlabel("data range")
    ax.set_ylabel("Total number of data")
    ax.set_title(_title(d))
    if handles:
        ax.legend(handles=handles, fontsize=8)
    return fig


def _range_lines(ax: Axes, d: Distribution, has_negative: bool) -> list[Artist]:
    """Red lines where an activation calibration node clips, dashed for its range (the low end
    only where the data has negative values), dotted for its narrowest channel's; the legend
    handles. Without a range, its threshold (``±threshold``)."""
    ranges = [(d.clip, "--", "range")]
    if d.clip is None and d.threshold is not None:
        ranges = [((-float(d.threshold), float(d.threshold)), "--", "threshold")]
    if d.narrowest is not None:
        ranges.append((d.narrowest, ":", "narrowest channel's range"))
    handles: list[Artist] = []
    for bounds, style, what in ranges:
        if bounds is None or not all(math.isfinite(v) for v in bounds):
            continue
        lo, hi = bounds
        label = f"threshold {hi:.6g}" if what == "threshold" else f"{what} [{lo:.6g}, {hi:.6g}]"
        handles.append(ax.axvline(hi, ls=style, color="red", linewidth=1, label=label, gid="threshold"))
        if has_negative:
            ax.axvline(lo, ls=style, color="red", linewidth=1, gid="threshold")
    return handles


# --------------------------------------------------------------------------- channel boxes

def _channel_ticks(ax: Axes, c: int, width: float) -> None:
    """1-based channel ticks, thinned to every k-th channel so that labels never overlap."""
    from matplotlib.ticker import FixedLocator, NullLocator

    rotate = c >= 100
    room = 0.16 if rotate else 0.07 * (len(str(c)) + 1)
    most = min(max(int(width / room), 2), MAX_CHANNEL_LABELS)
    k = 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        k = step
        if c / step <= most:
            break
    else:
        k = int(math.ceil(c / most))
    ticks = list(range(1, c + 1, k)) if k < 5 else [1] + list(range(k, c + 1, k))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks], rotation=90 if rotate else 0, fontsize=7 if rotate else 8)
    ax.set_xlim(0.5, c + 0.5)


def _add_segments(ax: Axes, segments: np.ndarray, **style: Any) -> PathPatch:
    """Line segments ``(N, 2, 2)`` as one path (a move and a line per segment) in one patch.

    A ``LineCollection`` makes a ``Path`` object per segment: 3,000 per box plot of 512 channels,
    a tenth of the CPU of runall's figures. Data limits are taken from the vertices, as in
    :func:`_stairs` (``Axes.add_patch`` would walk the path segment by segment in Python).
    """
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    verts = segments.reshape(-1, 2)
    codes = np.tile(np.array([Path.MOVETO, Path.LINETO], dtype=Path.code_type), len(segments))
    patch = PathPatch(Path(verts, codes), fill=False, **style)
    ax.add_artist(patch)
    ax.update_datalim(verts[np.isfinite(verts).all(axis=1)])
    return patch


def _boxes(ax: Axes, b: ChannelBoxes, px_per_channel: float) -> None:
    """Every box as one artist per part (boxes, whiskers, caps, medians, means, fliers).

    Boxes only a few pixels wide get thinner outlines and a fill, so the plot stays a readable
    band instead of a black mass.
    """
    from matplotlib.collections import PolyCollection

    c = b.channels
    x = np.arange(1, c + 1, dtype=np.float64)
    h, q = 0.25, 0.125  # half box width, half cap width (what Axes.bxp uses)
    lw = float(min(max(px_per_channel / 6.0, 0.3), 1.0))

    def hseg(y: np.ndarray, half: float) -> np.ndarray:
        return np.stack([np.stack([x - half, y], 1), np.stack([x + half, y], 1)], 1)

    def vseg(y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
        return np.stack([np.stack([x, y0], 1), np.stack([x, y1], 1)], 1)

    boxes = np.stack([np.stack([x - h, b.q1], 1), np.stack([x + h, b.q1], 1), np.stack([x + h, b.q3], 1),
                      np.stack([x - h, b.q3], 1)], 1)
    face = "none" if px_per_channel >= 8 else "#d9e2ec"
    # matplotlib takes an array of vertices (N, M, 2) directly (its fast path); its stubs say Sequence only.
    ax.add_collection(PolyCollection(boxes, facecolors=face, edgecolors="black", linewidths=lw, gid="box"), autolim=True)  # type: ignore[arg-type]
    parts: list[tuple[np.ndarray, dict[str, Any], str]] = [
        (np.concatenate([vseg(b.q1, b.whislo), vseg(b.q3, b.whishi)]), {"edgecolor": "black"}, "whisker"),
        (np.concatenate([hseg(b.whislo, q), hseg(b.whishi, q)]), {"edgecolor": "black"}, "cap"),
        (hseg(b.median, h), {"edgecolor": "red"}, "median"),
        (hseg(b.mean, h), {"edgecolor": "blue", "linestyle": "--"}, "mean"),
    ]
    for segs, kw, gid in parts:
        _add_segments(ax, segs, gid=gid, linewidth=lw, **kw)
    fx = [np.full(len(f), i + 1.0) for i, f in enumerate(b.fliers[:c])]
    fy = [np.asarray(f, dtype=np.float64) for f in b.fliers[:c]]
    if fx:
        ax.plot(np.concatenate(fx), np.concatenate(fy), linestyle="none", marker="o", markerfacecolor="red",
                markeredgecolor="red", markersize=2, gid="fliers")
    ax.autoscale_view()


def channel_boxes_figure(b: ChannelBoxes) -> Figure:
    """Per-channel box plot: red median, blue dashed mean, red-dot fliers; width grows with the
    channel count (``clip(0.08 * C, 6, 32)`` inches) and x tick labels thin out to stay legible.
    Where every channel holds one value (a GlobalAveragePool's output on one sample), each value
    is a red dot: a box of one value is a flat dash that median and mean lines hide."""
    c = b.channels
    width = float(min(max(0.08 * c, 6.0), 32.0))
    fig = new_figure(width, 8.0)
    # fixed margins in inches: matplotlib's default fractions waste a fifth of a wide figure
    left, right = min(0.125, 1.0 / width), 1.0 - min(0.1, 0.35 / width)
    fig.set_label(FIXED_LAYOUT)
    fig.subplots_adjust(left=left, right=right, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    # every channel one finite value (a pooled output of one sample): boxes would be flat dashes, so dots
    single = bool(c) and bool(np.isfinite(b.median).all() and np.array_equal(b.maximum, b.minimum))
    if single:
        ax.plot(np.arange(1, c + 1), b.median, linestyle="none", marker="o", markersize=3, color="red", gid="values")
    elif c:
        _boxes(ax, b, px_per_channel=width * (right - left) * fig.dpi / c)
        bad = [math.nan if not np.isfinite(v) else 0.0 for v in b.median]
        if any(math.isnan(v) for v in bad):
            mark_nonfinite(ax, [bad], offset=1)
            ax.legend(loc="upper right", fontsize=8)  # inside: the fixed margins leave no room beside the axes
    if c:
        _channel_ticks(ax, c, width)
    ax.set_xlabel("channel")
    ax.set_ylabel("Value in channel" if single else "Range of data in channel")
    # the layout is fixed (not cropped to the drawing): the title takes two lines and the name is
    # shortened to what fits the figure's width (an 11-point character is about 9.5 px wide)
    fits = max(24, int(width * fig.dpi / 9.5))
    what = f"one value per channel (axis {b.axis})" if single else f"per-channel distribution along axis {b.axis}"
    if b.nonfinite:
        what += f", {b.nonfinite} non-finite values left out"
    ax.set_title(f"{text(b.name, min(fits, 80))}\n{text(b.kind)} calibration node, {what}", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    return fig
