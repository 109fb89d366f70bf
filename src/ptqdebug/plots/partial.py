"""Partial quantization figure (reference §7.1).

As the original: grid; x = ``none`` (the calibrated model), then the sensitive nodes worst first;
a blue dashed "baseline" line at the float model's score (1.0 for cosine similarity); a red line
"partial quantization cumulative error" through the calibrated score and the scores with nodes
1..k kept in float; green ``x`` "per-node quantization sensitivity" at each node's own score;
rotated x ticks; legend outside on the right. With no sensitive node the axes say so in words.

Differences, on purpose: positions are numeric with the names as tick labels (the original's
categorical axis merged duplicate names, and a node called ``none`` with the baseline); the
baseline is the metric's best value (for metrics other than cosine similarity; none for sqnr,
whose best is +inf); non-finite scores leave a gap and are marked in red on the axes edge. With
``qtype="int16"`` the title and the red line's label say so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..analyses.partial import PartialQuantizationResult
from ..metrics import METRICS, pick_direction
from ._base import finite_or_nan, legend_right, mark_nonfinite, new_figure, text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["partial_quantization_figure"]


def _nothing_picked(result: PartialQuantizationResult) -> str:
    if result.left_out:
        return (f"{', '.join(text(n, 40) for n in result.left_out)} left out: with them in float,\n"
                "no calibration node would be on (the float model)")
    where, move = pick_direction(result.metric)
    return f"No node's {text(result.metric)} is {where} pick_threshold {result.pick_threshold:g}:\nnone was picked ({move} the threshold to pick some)"


def partial_quantization_figure(result: PartialQuantizationResult) -> Figure:
    k = len(result.nodes)
    fig = new_figure(float(min(max(6.0 + 0.25 * k, 8.0), 30.0)), 6.0)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.4)
    metric = METRICS.get(result.metric)
    best = metric.best if metric is not None and metric.best is not None else (1.0 if result.metric == "cosine-similarity" else math.nan)
    if math.isfinite(best):
        ax.axhline(best, color="blue", linestyle="--", linewidth=1, label="baseline", gid="baseline")
    cumulative = [result.baseline, *result.partial]
    wider = " (nodes 1..k in int16)" if result.qtype == "int16" else ""
    ax.plot(range(len(cumulative)), finite_or_nan(cumulative), color="red", marker="o", markersize=3, linewidth=1.2,
            label=f"partial quantization cumulative error{wider}", gid="partial")
    single = [math.nan, *result.single]
    ax.plot(range(len(single)), finite_or_nan(single), color="green", marker="x", linestyle="none", markersize=7,
            label="per-node quantization sensitivity", gid="single")
    mark_nonfinite(ax, [cumulative, [0.0, *result.single] if result.single else []])
    ax.set_xticks(range(k + 1))
    ax.set_xticklabels(["none", *(text(n, 40) for n in result.nodes)], rotation=90, fontsize=8)
    ax.set_xlim(-0.5, k + 0.5)
    if not k:  # a lone "none" point would leave the reader guessing why
        ax.text(0.5, 0.5, _nothing_picked(result), transform=ax.transAxes, ha="center", va="center", fontsize=10,
                wrap=True, gid="nothing-picked")
    details = [d for d, on in (("int16", result.qtype == "int16"), ("greedy order", result.order == "greedy")) if on]
    ax.set_title("Partial Quantization Analysis" + (f" ({', '.join(details)})" if details else ""))
    ax.set_ylabel("Cosine Similarity" if result.metric == "cosine-similarity" else text(result.metric))
    ax.ticklabel_format(axis="y", useOffset=False)  # scores near 1 read as such, not as offsets from "+1"
    ax.set_xlabel("node")
    legend_right(ax)
    return fig
