"""The original tool's output file names (reference §4.2, §5.2, §5.4, §7), made safe."""

from __future__ import annotations

from ..analyses.distribution import Distribution
from .files import safe_filename

__all__ = ["acc_error_png", "boxplot_png", "distribution_png"]


def acc_error_png(prefix: str, metric: str, average_mode: bool) -> str:
    return f"{'average_' if average_mode else ''}{prefix}_{metric}.png"


def distribution_png(d: Distribution) -> str:
    if d.kind == "activation":
        return f"activation_{safe_filename(d.name)}.png"
    if d.kind == "weight":
        return f"weight_{safe_filename(d.name)}.png"
    return f"node_output_:{safe_filename(d.tensor, 60)}_of_{safe_filename(d.name, 60)}.png"


def boxplot_png(name: str) -> str:
    return f"{safe_filename(name)}_boxplot.png"
