"""Cumulative error curves (reference §4.2, what ``plot_acc_error`` draws).

Differences from the original, on purpose:

* colours are fixed (Tableau 10, then the same colours dashed, ...), not random;
* a non-finite value keeps its x position: the line has a gap there and a red ``x`` on the axes
  edge marks it (legend entry "non-finite"); the original dropped ``+inf`` points and shifted
  every later point one step left;
* with at most 60 points the x ticks are the node names; the figure widens with the point count
  (bounded).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..analyses.accumulate import AccumulateErrorResult
from ._base import (
    MAX_NAMED_TICKS,
    curve_style,
    finite_or_nan,
    index_axis,
    legend_right,
    mark_nonfinite,
    new_figure,
    series_width,
    text,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["accumulate_error_figure"]


def _isolated(values: list[float]) -> list[int]:
    """Finite points with no finite neighbour: a line cannot show them, a marker must."""
    n = len(values)
    fin = [not math.isnan(v) for v in values]
    return [j for j in range(n) if fin[j] and not (j > 0 and fin[j - 1]) and not (j + 1 < n and fin[j + 1])]


def accumulate_error_figure(result: AccumulateErrorResult, average_mode: bool = False) -> Figure:
    """One line per curve against the node index; ``average_mode`` draws each curve's running mean."""
    n = len(result.tensors) if result.tensors else max((len(c.values) for c in result.curves), default=0)
    named = 0 < n <= MAX_NAMED_TICKS and len(result.nodes) >= n
    fig = new_figure(series_width(n, named), 6.0)
    ax = fig.add_subplot()
    raw_series = []
    for i, curve in enumerate(result.curves):
        values = curve.running_mean() if average_mode else curve.values
        raw_series.append(values)
        y = finite_or_nan(values)
        x = list(range(len(y)))
        marker_kw: dict[str, Any]
        if len(y) <= MAX_NAMED_TICKS:
            marker_kw = {"marker": "o", "markersize": 3}
        else:
            marker_kw = {"marker": "o", "markersize": 3, "markevery": _isolated(y)}
        ax.plot(x, y, label=text(curve.label), linewidth=1.2, **curve_style(i), **marker_kw)
    mark_nonfinite(ax, raw_series)
    index_axis(ax, n, result.nodes if named else None)
    ax.set_xlabel("node index")
    ax.set_ylabel(text(result.metric))
    ax.set_title(text(result.prefix, 120) + (f" (mean of {result.samples} samples)" if result.samples > 1 else ""))
    ax.grid(True, alpha=0.3)
    legend_right(ax, title="running mean" if average_mode else None)
    return fig
