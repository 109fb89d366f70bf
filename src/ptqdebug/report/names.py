"""The original tool's output file names (reference §4.2, §5.2, §5.4, §7), made safe.

Node names are untrusted text: every name goes through :func:`~ptqdebug.report.files.safe_filename`
(no path separators, no ``..``, ASCII only, at most ~120 characters). Pass ``among`` (every name
written in the same folder) to keep the names distinct: names that would clean to the same file
name (``a/b`` and ``a:b``) get a short hash of the full name appended.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..analyses.distribution import Distribution
from .files import safe_filename, unique_filenames

__all__ = ["acc_error_png", "boxplot_png", "distribution_png"]


def acc_error_png(prefix: str, metric: str, average_mode: bool) -> str:
    return f"{'average_' if average_mode else ''}{safe_filename(prefix)}_{safe_filename(metric)}.png"


def _fragment(name: str, among: Iterable[str] | None, limit: int = 120) -> str:
    if among is None:
        return safe_filename(name, limit)
    return unique_filenames([name, *among], limit)[name]


#: The original's ``node_output_:`` file names; Windows does not allow ``:`` in a file name.
_COLON = "_" if os.name == "nt" else ":"


def distribution_png(d: Distribution, among: Iterable[Distribution] | None = None) -> str:
    """``activation_<name>.png``, ``weight_<name>.png`` or ``node_output_:<tensor>_of_<node>.png``."""
    names = None if among is None else [x.name for x in among]
    if d.kind == "activation":
        return f"activation_{_fragment(d.name, names)}.png"
    if d.kind == "weight":
        return f"weight_{_fragment(d.name, names)}.png"
    tensors = None if among is None else [x.tensor for x in among if x.kind == "node"]
    return f"node_output_{_COLON}{_fragment(d.tensor, tensors, 60)}_of_{_fragment(d.name, names, 60)}.png"


def boxplot_png(name: str, among: Iterable[str] | None = None) -> str:
    return f"{_fragment(name, among)}_boxplot.png"
