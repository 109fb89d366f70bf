"""Figures from analysis results: each function returns a :class:`matplotlib.figure.Figure`.

No analysis happens here and no file is written except by :func:`save_figure`, at the path the
caller gives. The figures use their own Agg canvas, never ``matplotlib.pyplot``: no global figure
state, no ``show()``, nothing left open. matplotlib itself is imported only when a figure is
drawn, so importing this package is cheap.
"""

from __future__ import annotations

from ._base import save_figure
from .accumulate import accumulate_error_figure
from .distribution import channel_boxes_figure, distribution_figure
from .partial import partial_quantization_figure
from .stats import stat_info_figure

__all__ = [
    "accumulate_error_figure",
    "channel_boxes_figure",
    "distribution_figure",
    "partial_quantization_figure",
    "save_figure",
    "stat_info_figure",
]
