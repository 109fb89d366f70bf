"""Calibration node statistics against the node index (reference §7.2, ``visualize=True``).

Four curves on a log y axis: Thresholds, Scales, Max_vals, Min_nz_vals. The original plotted each
node's *first* value, which for a per-channel node is an arbitrary channel. Here each node gives
one number that summarises all its channels:

* Thresholds, Scales, Max_vals: the largest value (the range the quantizer must cover);
* Min_nz_vals: the smallest positive value (0 means "all-zero channel" and is not a magnitude).

For a per-tensor node these are the same as the first value. A value that a log axis cannot show
(zero, negative, NaN, inf, or a node with no values) leaves a gap in its curve and a red ``x`` on
the bottom edge (legend entry "not on log axis") instead of an error; a statistic no node has
(the thresholds and scales of bfloat16 and float16 nodes) is no curve at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..analyses.stats import CalibrationNodeStats
from ._base import (
    MAX_NAMED_TICKS,
    curve_style,
    index_axis,
    legend_right,
    mark_nonfinite,
    new_figure,
    series_width,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["stat_info_figure", "stat_summary"]

OFF_LOG_LABEL = "not on log axis"


def _largest(values: Iterable[float]) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return max(finite) if finite else math.nan


def _smallest_positive(values: Iterable[float]) -> float:
    pos = [float(v) for v in values if math.isfinite(float(v)) and float(v) > 0]
    return min(pos) if pos else math.nan


_CURVES: tuple[tuple[str, str, Callable[[Iterable[float]], float]], ...] = (
    ("Thresholds", "thresholds", _largest),
    ("Scales", "scales", _largest),
    ("Max_vals", "max_vals", _largest),
    ("Min_nz_vals", "min_nz_vals", _smallest_positive),
)


def stat_summary(stats: Sequence[CalibrationNodeStats], tensor_type: str) -> dict[str, list[float]]:
    """The plotted numbers: ``{curve label: [one value per node of tensor_type]}`` (NaN when a node has none)."""
    want = "feature" if tensor_type == "activation" else tensor_type
    nodes = [s for s in stats if s.tensor_type == want]
    return {label: [reduce(getattr(s, attr)) for s in nodes] for label, attr, reduce in _CURVES}


def stat_info_figure(stats: Sequence[CalibrationNodeStats], tensor_type: str) -> Figure:
    """``tensor_type`` is ``"weight"`` or ``"feature"`` (``"activation"`` is accepted for ``"feature"``)."""
    want = "feature" if tensor_type == "activation" else tensor_type
    nodes = [s for s in stats if s.tensor_type == want]
    names = [s.name for s in nodes]
    summary = stat_summary(stats, want)
    n = len(names)
    fig = new_figure(series_width(n, n <= MAX_NAMED_TICKS), 6.0)
    ax = fig.add_subplot()
    ax.set_yscale("log")
    bad_positions: list[float] = [0.0] * n
    drawn = False
    for i, (label, attr, _) in enumerate(_CURVES):
        if nodes and not any(getattr(s, attr) for s in nodes):
            continue  # a statistic no node has (a bfloat16 node's scale): no curve, no marks
        y = [v if math.isfinite(v) and v > 0 else math.nan for v in summary[label]]
        for j, v in enumerate(y):
            if math.isnan(v):
                bad_positions[j] = math.nan
        drawn |= any(not math.isnan(v) for v in y)
        ax.plot(range(n), y, label=label, marker="os^v"[i], markersize=4, linewidth=1.2, **curve_style(i))
    mark_nonfinite(ax, [bad_positions], label=OFF_LOG_LABEL)
    if not drawn:
        ax.set_ylim(1e-3, 1e3)
    index_axis(ax, n, names)
    ax.set_title(f"{tensor_type} calibration nodes")
    ax.set_xlabel("Node")
    ax.set_ylabel("Value")
    ax.grid(True, which="major", alpha=0.3)
    legend_right(ax)
    return fig
