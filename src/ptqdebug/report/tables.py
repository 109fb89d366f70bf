"""The original tool's text tables, character for character (reference §3.5 and §6.3).

:func:`info_table` is the ``verbose`` table (``print_info_dict``); :func:`log_table` is the
``sensitivity_of_<node_type>.log`` file (``save_node_sensitivity``). Their small differences
(first-column minimum width 10 vs 4, title padding) are the original's and are kept so that
scripts parsing these files keep working.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..analyses.sensitivity import SensitivityResult
from ..metrics import known_metric

__all__ = ["info_table", "log_table", "sensitivity_rows", "shown"]

_MAX_NAME = 50


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME else "..." + name[-(_MAX_NAME - 3):]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _columns(rows: Mapping[str, Mapping[str, object]], first_min: int) -> tuple[list[str], list[int]]:
    """Column headers in first-seen order, and each column's padded width (the first column is
    at least ``first_min`` wide, at most 50, plus 2)."""
    headers: list[str] = []
    for values in rows.values():
        for k in values:
            if k not in headers:
                headers.append(k)
    w0 = min(max([first_min, *(len(k) for k in rows)]), _MAX_NAME)
    widths = [w0] + [max([len(h), *(len(_cell(v.get(h))) for v in rows.values())]) for h in headers]
    return headers, [w + 2 for w in widths]


def _body(first: str, headers: list[str], widths: list[int], rows: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Header line, rule, and one line per row, every cell left-aligned and padded."""
    lines = ["".join(f"{h:<{w}}" for h, w in zip([first, *headers], widths))]
    lines.append("-" * sum(widths))
    for name, values in rows.items():
        cells = [_short(name), *(_cell(values.get(h)) for h in headers)]
        lines.append("".join(f"{c:<{w}}" for c, w in zip(cells, widths)))
    return lines


def info_table(title: str, key_type: str, rows: Mapping[str, Mapping[str, object]]) -> str:
    """``print_info_dict``: the block logged by ``verbose=True`` (starts with a newline)."""
    headers, widths = _columns(rows, 10)
    head_length = sum(widths)
    left = (head_length - len(title)) // 2
    right = left + 1 if (head_length - len(title)) % 2 else left
    return "\n".join(["", "=" * left + title + "=" * right, *_body(key_type, headers, widths, rows)])


def log_table(title: str, rows: Mapping[str, Mapping[str, object]]) -> str:
    """``save_node_sensitivity``: the ``.log`` file text, every line ending in a newline."""
    headers, widths = _columns(rows, 4)
    k = int((sum(widths) - len(title)) / 2)
    lines = ["=" * k + title + "=" * k, *_body("Node", headers, widths, rows)]
    return "".join(line + "\n" for line in lines)


def shown(value: float, metric: str = "cosine-similarity", decimals: int = 5) -> float:
    """A score rounded for a table as the original rounds it (``decimals``), but never so far that
    it reads as the metric's best value when it is not: 0.9999996 stays 0.9999996, not 1.0 (with
    one sample, most cosines round to 1.0 otherwise and the ranking cannot be read)."""
    known = known_metric(metric)
    best = known.best if known is not None else None
    value = float(value)
    rounded = round(value, decimals)
    if best is None or rounded != best or value == best or not math.isfinite(value):
        return rounded
    return round(value, math.ceil(-math.log10(abs(best - value))) + 1)


#: readers named in a printed table's node column; the rest are counted (a transformer's tensor can
#: have a dozen readers, which made a table hundreds of characters wide)
READERS_SHOWN = 2


def _readers(node: str) -> str:
    """A calibration node's readers (``a;b;c``) for a printed table: the first few, then a count."""
    names = node.split(";")
    return node if len(names) <= READERS_SHOWN + 1 else ";".join(names[:READERS_SHOWN]) + f";+{len(names) - READERS_SHOWN} more"


def sensitivity_rows(result: SensitivityResult, rounded: bool) -> dict[str, dict[str, object]]:
    """Rows for the tables: the verbose extra columns (node, threshold, bit) then the metrics."""
    rows: dict[str, dict[str, object]] = {}
    for e in result.entries:
        row: dict[str, object] = {}
        if rounded and result.node_type != "node":  # one calibration node per row: who reads it
            row["node"] = _readers(e.node)
            if result.node_type in ("activation", "tae"):
                row["threshold"] = e.threshold
                row["bit"] = e.bits
        for m in result.metrics:
            v = e.scores[m]
            row[m] = shown(v, m) if rounded else v
        rows[e.name] = row
    return rows

