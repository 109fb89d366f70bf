"""The cumulative error curves as inline SVG: hover a point for its node and value."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from .htmlparts import CURVE_COLORS, as_list, esc, fmt, get, num

__all__ = ["svg_chart"]

_MAX_SVG_POINTS = 6000  # hover circles per chart; beyond it, only isolated points get one


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values in ``[lo, hi]`` (1, 2, 2.5 or 5 times a power of ten apart)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def svg_chart(acc: Mapping[str, Any]) -> str:
    """One accumulate-error result as an inline SVG line chart plus an HTML legend."""
    curves = [c for c in as_list(get(acc, "curves")) if isinstance(c, Mapping)]
    series = [[num(v) for v in as_list(get(c, "values"))] for c in curves]
    n = max((len(s) for s in series), default=0)
    if not n:
        return ""
    nodes, tensors = as_list(get(acc, "nodes")), as_list(get(acc, "tensors"))
    metric = str(get(acc, "metric") or "")
    finite = [v for s in series for v in s if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.01 or 0.5
        lo, hi = lo - pad, hi + pad
    lo, hi = lo - (hi - lo) * 0.05, hi + (hi - lo) * 0.05
    if not math.isfinite(hi - lo):  # values near the float limits: plot on a scaled-down axis would lie; clamp
        lo, hi = max(lo, -1e300), min(hi, 1e300)
    W, H, L, R, T, B = 960, 340, 70, 14, 12, 42
    pw, ph = W - L - R, H - T - B

    def X(j: int) -> float:
        return L + (pw * j / (n - 1) if n > 1 else pw / 2)

    def Y(v: float) -> float:
        return T + ph * (hi - v) / (hi - lo)

    out = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{esc(get(acc, "prefix"))}">']
    for t in _nice_ticks(lo, hi):
        out.append(f'<line class="grid" x1="{L}" x2="{W - R}" y1="{Y(t):.1f}" y2="{Y(t):.1f}"/>'
                   f'<text x="{L - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{esc(fmt(t, 5))}</text>')
    for t in _nice_ticks(0, n - 1, 10) if n > 1 else [0]:
        j = int(round(t))
        out.append(f'<line class="axis" x1="{X(j):.1f}" x2="{X(j):.1f}" y1="{H - B}" y2="{H - B + 4}"/>'
                   f'<text x="{X(j):.1f}" y="{H - B + 16}" text-anchor="middle">{j}</text>')
    out.append(f'<line class="axis" x1="{L}" x2="{W - R}" y1="{H - B}" y2="{H - B}"/>'
               f'<line class="axis" x1="{L}" x2="{L}" y1="{T}" y2="{H - B}"/>'
               f'<text x="{L + pw / 2}" y="{H - 6}" text-anchor="middle">node index</text>'
               f'<text transform="translate(14 {T + ph / 2}) rotate(-90)" text-anchor="middle">{esc(metric)}</text>')
    total = sum(len(s) for s in series)
    any_nonfinite = False
    for i, (c, s) in enumerate(zip(curves, series)):
        color = CURVE_COLORS[i % len(CURVE_COLORS)]
        dash = ' stroke-dasharray="6 3"' if (i // len(CURVE_COLORS)) % 2 else ""
        label = str(get(c, "label", f"curve {i}"))
        d, pen = [], False
        ok = [v is not None and math.isfinite(v) for v in s]
        for j, v in enumerate(s):
            if ok[j]:
                d.append(f"{'L' if pen else 'M'}{X(j):.1f} {Y(cast(float, v)):.1f}")
            pen = ok[j]
        out.append(f'<g><path d="{" ".join(d)}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        for j, v in enumerate(s):
            where = f"#{j} {nodes[j] if j < len(nodes) else ''}" + (f" ({tensors[j]})" if j < len(tensors) else "")
            if ok[j]:
                isolated = not (j > 0 and ok[j - 1]) and not (j + 1 < len(s) and ok[j + 1])
                if total <= _MAX_SVG_POINTS or isolated:
                    out.append(f'<circle cx="{X(j):.1f}" cy="{Y(cast(float, v)):.1f}" r="3" fill="{color}">'
                               f'<title>{esc(label)}\n{esc(where)}\n{esc(metric)} = {esc(fmt(v))}</title></circle>')
            else:
                any_nonfinite = True
                y = T + 1 if v == math.inf else H - B - 1
                x0 = X(j)
                out.append(f'<path class="nfm" d="M{x0 - 4:.1f} {y - 4:.1f}L{x0 + 4:.1f} {y + 4:.1f}M{x0 - 4:.1f} {y + 4:.1f}L{x0 + 4:.1f} {y - 4:.1f}">'
                           f'<title>{esc(label)}\n{esc(where)}\n{esc(metric)} = {esc(fmt(v))} (non-finite)</title></path>')
        out.append("</g>")
    out.append("</svg>")
    legend = "".join(f'<li><i style="background:{CURVE_COLORS[i % len(CURVE_COLORS)]}"></i>{esc(get(c, "label"))}</li>'
                     for i, c in enumerate(curves))
    if any_nonfinite:
        legend += '<li><i class="x">×</i>non-finite (gap in the line)</li>'
    return f'<div class="chart">{"".join(out)}<ul class="legend">{legend}</ul></div>'
