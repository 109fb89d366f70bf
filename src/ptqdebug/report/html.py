"""One self-contained HTML page from the ``results`` dict that runall also writes as ``results.json``.

Order: header (model, data, notes), the verdict and what to keep in higher precision, sortable
sensitivity tables, cumulative error curves (inline SVG: hover a point for its node and value),
distributions, channel-wise box plots, partial quantization, footer. A section whose key is missing,
null or empty is left out; so is any single value that is missing.

The page needs nothing outside itself: images (paths relative to ``save_dir``) are embedded as
``data:`` URIs, the stylesheet and the sort script are inline, and a Content-Security-Policy forbids
every network load and every script but the page's own (pinned by its hash). Every string from the
results (node names above all) is untrusted and escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metrics import METRICS
from .assets import REPORT_CSS, SORT_JS
from .files import ensure_dir, write_atomic

__all__ = ["render_report", "write_report"]

#: Same colours, in the same order, as the curves of ``ptqdebug.plots`` (Tableau 10).
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".webp": "image/webp", ".svg": "image/svg+xml"}
_CAUSES = {"weight": "weight quantization", "activation": "activation quantization",
           "both": "weight and activation quantization", "none": "no significant loss"}
_TYPE_TITLES = {"weight": "Weight calibration nodes", "activation": "Activation calibration nodes", "node": "Ordinary nodes"}
_SERIES = {"input": "input", "float": "float", "quantized": "quantized", "error": "error"}
_MAX_SVG_POINTS = 6000  # hover circles per chart; beyond it, only isolated points get one


# --------------------------------------------------------------------------- small helpers

def esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def name_html(x: object) -> str:
    """An escaped name with line-break opportunities after ``/``, ``_``, ``.`` and ``:``."""
    return re.sub(r"([/_.:])", r"\1<wbr>", esc(x))


def _get(d: object, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, Mapping) else default


def _map(d: object, key: str) -> Mapping[str, Any]:
    """``d[key]`` if it is a mapping, else an empty one (untrusted input: anything can be anywhere)."""
    v = _get(d, key)
    return v if isinstance(v, Mapping) else {}


def _list(x: object) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def num(x: object) -> float | None:
    """A number from the results: floats, ints, or the strings "nan", "inf", "-inf"; else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x.strip())
        except ValueError:
            return None
    return None


def fmt(x: object, digits: int = 6, sign: bool = False) -> str:
    """6 significant digits; never rounds a value that is not 1 to "1" (cosines near 1 matter)."""
    v = num(x)
    if v is None:
        return "–"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    s = f"{v:+.{digits}g}" if sign else f"{v:.{digits}g}"
    d = digits
    while float(s) != v and abs(float(s)) == 1.0 and d < 12:
        d += 1
        s = f"{v:+.{d}g}" if sign else f"{v:.{d}g}"
    return s


def _sortkey(v: float | None) -> str:
    if v is None:
        return ""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def num_td(x: object, extra: str = "", sign: bool = False) -> str:
    v = num(x)
    bad = v is not None and not math.isfinite(v)
    cls = "num nf" if bad else "num"
    return f'<td class="{cls}{extra}" data-v="{_sortkey(v)}">{esc(fmt(x, sign=sign))}</td>'


def text_td(x: object, cls: str = "") -> str:
    """A text cell; a ``name`` cell gets line-break opportunities (sorting uses ``data-v``)."""
    c = f' class="{cls}"' if cls else ""
    if "name" in cls.split():
        return f'<td{c} data-v="{esc(x)}">{name_html(x)}</td>'
    return f"<td{c}>{esc(x)}</td>"


def _safe_rel(rel: object) -> str | None:
    """A relative path inside save_dir (no scheme, no absolute path, no ``..``), else None."""
    if not isinstance(rel, str) or not rel or ":" in rel or rel.startswith(("/", "\\")):
        return None
    parts = rel.replace("\\", "/").split("/")
    return None if ".." in parts else "/".join(p for p in parts if p not in ("", "."))


def embed_image(save_dir: Path, rel: object) -> str | None:
    """The file as a ``data:`` URI, only if it is an image inside ``save_dir``."""
    clean = _safe_rel(rel)
    if clean is None:
        return None
    mime = _MIME.get(Path(clean).suffix.lower())
    root = save_dir.resolve()
    path = (root / clean).resolve()
    if mime is None or root not in path.parents or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _img(save_dir: Path, rel: object, alt: str) -> str:
    uri = embed_image(save_dir, rel)
    if uri is None:
        return f'<p class="missing">image not available: <code>{esc(rel)}</code></p>' if rel else ""
    return f'<img src="{uri}" alt="{esc(alt)}">'


def _table(head: Sequence[tuple[str, str]], rows: Sequence[str], cls: str = "", caption: str = "") -> str:
    """``head``: (label html, "num"/"text"); ``rows``: ``<tr>`` html."""
    ths = "".join(f'<th scope="col" data-type="{t}"{" class=num" if t == "num" else ""}>{h}</th>' for h, t in head)
    cap = f"<caption class=small>{caption}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table class="{cls}">{cap}<thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _kind_pill(kind: object) -> str:
    cls = f" kind-{kind}" if kind in ("weight", "activation", "node") else ""
    return f'<span class="pill{cls}">{esc(kind)}</span>'


def _metric_best(metric: object) -> float | None:
    m = METRICS.get(metric) if isinstance(metric, str) else None
    return m.best if m is not None and math.isfinite(m.best) else None


def _direction(metric: str) -> str:
    m = METRICS.get(metric)
    if m is None:
        return ""
    return ' <span class="dir" title="higher is better">↑</span>' if m.higher_is_better else \
        ' <span class="dir" title="lower is better">↓</span>'


# --------------------------------------------------------------------------- sections

def _header(r: Mapping[str, Any]) -> str:
    model, data = _map(r, "model"), _map(r, "data")
    path = _get(model, "path")
    cal = _map(model, "calibration_nodes")
    items: list[tuple[str, str]] = []
    if _get(model, "format"):
        items.append(("format", esc(_get(model, "format"))))
    if isinstance(cal, Mapping) and cal:
        items.append(("calibration nodes", " · ".join(f"{esc(v)} {esc(k)}" for k, v in cal.items())))
    used, total = _get(data, "samples_used"), _get(data, "samples_total")
    if used is not None:
        items.append(("samples used", esc(used) + (f" of {esc(total)}" if total is not None else "")))
    if _get(data, "source"):
        items.append(("data", f"<code>{esc(_get(data, 'source'))}</code>"))
    for key in ("inputs", "outputs"):
        names = _list(_get(model, key))
        if names:
            shown = ", ".join(f"<code>{esc(n)}</code>" for n in names[:6]) + (f" … (+{len(names) - 6})" if len(names) > 6 else "")
            items.append((key, shown))
    meta = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items)
    notes = [n for n in _list(_get(model, "notes")) if n]
    notes_html = ("<div class=notes role=note><strong>Notes on this model</strong><ul>"
                  + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>") if notes else ""
    name = os.path.basename(str(path)) if path else "PTQ accuracy report"
    sub = f'<p class="subtitle mono">{esc(path)}</p>' if path else ""
    return (f'<header class="card" id="overview"><h1>{esc(name)}</h1>{sub}'
            f'<dl class="meta">{meta}</dl>{notes_html}</header>')


def _verdict(v: Mapping[str, Any]) -> str:
    metric = str(_get(v, "metric") or "cosine-similarity")
    cause = str(_get(v, "cause") or "")
    ccls = f"cause-{cause}" if cause in _CAUSES else ""
    out = [f'<section class="card verdict {ccls}" id="verdict"><h2>Verdict</h2>']
    if _get(v, "summary"):
        out.append(f'<p class="headline">{esc(_get(v, "summary"))}</p>')
    if cause:
        out.append(f'<p>Main cause: <span class="pill {ccls}">{esc(_CAUSES.get(cause, cause))}</span> '
                   f'<span class="muted small">({esc(metric)} at the model outputs; float model = '
                   f'{esc(fmt(_metric_best(metric)))})</span></p>')
    scores = _map(v, "scores")
    tiles = [("calibrated", "Calibrated model"), ("only_weight", "Only weights quantized"),
             ("only_activation", "Only activations quantized")]
    present = [(k, label, num(_get(scores, k))) for k, label in tiles if _get(scores, k) is not None]
    if present:
        worst = {"weight": "only_weight", "activation": "only_activation"}.get(cause)
        out.append('<div class="tiles">' + "".join(
            f'<div class="tile{" worst" if k == worst else ""}"><div class="label">{label}</div>'
            f'<div class="value">{esc(fmt(val))}</div></div>' for k, label, val in present) + "</div>")
    recs = [x for x in _list(_get(v, "recommendations")) if isinstance(x, Mapping)]
    if recs:
        base, best = num(_get(scores, "calibrated")), _metric_best(metric)
        show_cals = any(_list(_get(rec, "calibration_nodes")) not in ([], [_get(rec, "node")]) for rec in recs)
        rows = []
        for i, rec in enumerate(recs, 1):
            cals = _list(_get(rec, "calibration_nodes"))
            cal_html = ", ".join(f"<code>{name_html(c)}</code>" for c in cals[:4]) + (f" … (+{len(cals) - 4})" if len(cals) > 4 else "")
            after = num(_get(rec, "score_after"))
            bar = ""
            if None not in (base, best, after) and math.isfinite(base) and math.isfinite(after) and best != base:
                frac = min(max((after - base) / (best - base), 0.0), 1.0)
                bar = f'<div class="bar" title="share of the gap to the float model closed"><span style="width:{frac * 100:.1f}%"></span><em>{frac * 100:.0f}%</em></div>'
            cal_td = f'<td class="small">{cal_html}</td>' if show_cals else ""
            rows.append(f'<tr><td class="num" data-v="{i}">{i}</td>{text_td(_get(rec, "node"), "name mono")}{cal_td}'
                        f'{num_td(_get(rec, "score_after"))}{num_td(_get(rec, "recovery"), sign=True)}<td>{bar}</td></tr>')
        head = [("#", "num"), ("keep in higher precision", "text")] + ([("its calibration nodes", "text")] if show_cals else []) + [
                (f"score after keeping 1..k{_direction(metric)}", "num"), ("recovers", "num"), ("gap to float closed", "text")]
        out.append("<h3>What to keep in higher precision</h3>"
                   "<p class=\"muted small\">Un-quantize the nodes in this order; each row is the score with rows 1..k kept in float.</p>"
                   + _table(head, rows, "recs"))
    out.append("</section>")
    return "".join(out)


def _sensitivity(sens: Mapping[str, Any]) -> str:
    parts = []
    for typ in [t for t in ("weight", "activation", "node") if t in sens] + [t for t in sens if t not in ("weight", "activation", "node")]:
        res = sens[typ]
        entries = [e for e in _list(_get(res, "entries")) if isinstance(e, Mapping)]
        if not entries:
            continue
        metrics = [str(m) for m in _list(_get(res, "metrics"))] or list(dict.fromkeys(k for e in entries for k in _map(e, "scores")))
        has = {k: any(_get(e, k) not in (None, "", []) for e in entries) for k in ("node", "threshold", "bits")}
        show_q = any(_list(_get(e, "quantizers")) != [_get(e, "name")] for e in entries)
        head = [("#", "num"), ("name", "text")] + [(esc(m) + _direction(m), "num") for m in metrics]
        head += [(label, t) for key, label, t in (("node", "read by", "text"), ("threshold", "threshold", "num"), ("bits", "bits", "num")) if has[key]]
        if show_q:
            head.append(("calibration nodes", "text"))
        rows = []
        nonfinite = 0
        for i, e in enumerate(entries, 1):
            scores = _map(e, "scores")
            vals = [num(_get(scores, m)) for m in metrics]
            bad = bool(_get(e, "nonfinite")) or any(v is not None and not math.isfinite(v) for v in vals[:1])
            nonfinite += bad
            cells = [f'<td class="num" data-v="{i}">{i}</td>', text_td(_get(e, "name"), "name mono")]
            cells += [num_td(_get(scores, m)) for m in metrics]
            if has["node"]:
                cells.append(text_td(_get(e, "node"), "name small"))
            if has["threshold"]:
                cells.append(num_td(_get(e, "threshold")))
            if has["bits"]:
                cells.append(num_td(_get(e, "bits")))
            if show_q:
                qs = _list(_get(e, "quantizers"))
                cells.append(f'<td class="small">{", ".join(esc(q) for q in qs[:3])}{f" … (+{len(qs) - 3})" if len(qs) > 3 else ""}</td>')
            rows.append(f'<tr{" class=nonfinite" if bad else ""}>{"".join(cells)}</tr>')
        info = [f"{len(entries)} entries, worst first"]
        if _get(res, "samples") is not None:
            info.append(f"{esc(_get(res, 'samples'))} samples")
        compared = _list(_get(res, "compared"))
        if compared:
            info.append("compared at " + ", ".join(f"<code>{esc(c)}</code>" for c in compared[:4]) + (" …" if len(compared) > 4 else ""))
        if nonfinite:
            info.append(f'<span class="nf">{nonfinite} non-finite (highlighted)</span>')
        parts.append(f'<h3 id="sensitivity-{esc(typ)}">{esc(_TYPE_TITLES.get(typ, typ))}</h3>'
                     f'<p class="muted small">{" · ".join(info)}. Click a column header to sort.</p>'
                     + _table(head, rows, "sortable"))
    if not parts:
        return ""
    return ('<section class="card" id="sensitivity"><h2>Sensitivity</h2><p class="muted small">Error at the model '
            "outputs when only this node is quantized (everything else float).</p>" + "".join(parts) + "</section>")


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
    curves = [c for c in _list(_get(acc, "curves")) if isinstance(c, Mapping)]
    series = [[num(v) for v in _list(_get(c, "values"))] for c in curves]
    n = max((len(s) for s in series), default=0)
    if not n:
        return ""
    nodes, tensors = _list(_get(acc, "nodes")), _list(_get(acc, "tensors"))
    metric = str(_get(acc, "metric") or "")
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

    out = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{esc(_get(acc, "prefix"))}">']
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
        label = str(_get(c, "label", f"curve {i}"))
        d, pen = [], False
        ok = [v is not None and math.isfinite(v) for v in s]
        for j, v in enumerate(s):
            if ok[j]:
                d.append(f"{'L' if pen else 'M'}{X(j):.1f} {Y(v):.1f}")
            pen = ok[j]
        out.append(f'<g><path d="{" ".join(d)}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        for j, v in enumerate(s):
            where = f"#{j} {nodes[j] if j < len(nodes) else ''}" + (f" ({tensors[j]})" if j < len(tensors) else "")
            if ok[j]:
                isolated = not (j > 0 and ok[j - 1]) and not (j + 1 < len(s) and ok[j + 1])
                if total <= _MAX_SVG_POINTS or isolated:
                    out.append(f'<circle cx="{X(j):.1f}" cy="{Y(v):.1f}" r="3" fill="{color}">'
                               f'<title>{esc(label)}\n{esc(where)}\n{esc(metric)} = {esc(fmt(v))}</title></circle>')
            else:
                any_nonfinite = True
                y = T + 1 if v == math.inf else H - B - 1
                x0 = X(j)
                out.append(f'<path class="nfm" d="M{x0 - 4:.1f} {y - 4:.1f}L{x0 + 4:.1f} {y + 4:.1f}M{x0 - 4:.1f} {y + 4:.1f}L{x0 + 4:.1f} {y - 4:.1f}">'
                           f'<title>{esc(label)}\n{esc(where)}\n{esc(metric)} = {esc(fmt(v))} (non-finite)</title></path>')
        out.append("</g>")
    out.append("</svg>")
    legend = "".join(f'<li><i style="background:{CURVE_COLORS[i % len(CURVE_COLORS)]}"></i>{esc(_get(c, "label"))}</li>'
                     for i, c in enumerate(curves))
    if any_nonfinite:
        legend += '<li><i class="x">×</i>non-finite (gap in the line)</li>'
    return f'<div class="chart">{"".join(out)}<ul class="legend">{legend}</ul></div>'


def _accumulate(items: Sequence[Any], save_dir: Path) -> str:
    parts = []
    for acc in items:
        if not isinstance(acc, Mapping):
            continue
        chart = svg_chart(acc)
        img = _img(save_dir, _get(acc, "image"), f"{_get(acc, 'prefix')} figure") if _get(acc, "image") else ""
        if not chart and not img:
            continue
        static = f"<details><summary>static figure</summary><figure>{img}</figure></details>" if img else ""
        parts.append(f'<h3>{esc(_get(acc, "prefix"))} <span class="muted small">({esc(_get(acc, "metric"))})</span></h3>{chart}{static}')
    if not parts:
        return ""
    return ('<section class="card" id="accumulate-error"><h2>Cumulative error</h2><p class="muted small">Error at every '
            "node output with all upstream calibration nodes on, in graph order. Hover a point for its node and value.</p>"
            + "".join(parts) + "</section>")


def _distributions(items: Sequence[Any], save_dir: Path) -> str:
    figs = []
    for d in items:
        if not isinstance(d, Mapping):
            continue
        facts = [f'<strong class="mono">{name_html(_get(d, "name"))}</strong> {_kind_pill(_get(d, "kind"))}']
        if _get(d, "tensor") and _get(d, "tensor") != _get(d, "name"):
            facts.append(f"tensor <code>{name_html(_get(d, 'tensor'))}</code>")
        for key, label in (("cosine", "cosine"), ("abs_max", "abs max"), ("threshold", "threshold")):
            if _get(d, key) is not None:
                facts.append(f"{label} <b>{esc(fmt(_get(d, key)))}</b>")
        series = _map(d, "series")
        rows = "".join(f"<tr><td>{esc(_SERIES.get(k, k))}</td>" + "".join(num_td(_get(s, c)) for c in ("min", "max", "mean", "std"))
                       + f"{num_td(_get(s, 'size'))}</tr>" for k, s in series.items()) if isinstance(series, Mapping) else ""
        table = ('<div class="stats"><table><thead><tr><th>series</th><th class=num>min</th><th class=num>max</th><th class=num>mean</th>'
                 f'<th class=num>std</th><th class=num>size</th></tr></thead><tbody>{rows}</tbody></table></div>') if rows else ""
        img = _img(save_dir, _get(d, "image"), f"distribution of {_get(d, 'name')}")
        figs.append(f'<figure>{img}'
                    f'<figcaption>{" · ".join(facts)}{table}</figcaption></figure>')
    if not figs:
        return ""
    return ('<section class="card" id="distributions"><h2>Data distributions</h2><p class="muted small">Histograms of '
            "float and quantized values of the most sensitive nodes (exact zeros left out).</p>"
            f'<div class="figs">{"".join(figs)}</div></section>')


def _channelwise(items: Sequence[Any], save_dir: Path) -> str:
    figs = []
    for b in items:
        if not isinstance(b, Mapping):
            continue
        facts = [f'<strong class="mono">{name_html(_get(b, "name"))}</strong> {_kind_pill(_get(b, "kind"))}']
        for key, label in (("channels", "channels"), ("axis", "axis"), ("max_abs", "max |x|")):
            if _get(b, key) is not None:
                facts.append(f"{label} <b>{esc(fmt(_get(b, key)))}</b>")
        ratio = num(_get(b, "range_ratio_max_to_median"))
        hint = ""
        if ratio is not None:
            facts.append(f"widest channel range = <b>{esc(fmt(ratio, 4))}×</b> the median channel's")
            if math.isfinite(ratio) and ratio >= 10:
                hint = ('<div class="hint">Channel ranges differ a lot: a single per-tensor scale spends most levels '
                        "on the widest channels (per-channel quantization or equalization helps).</div>")
        img = _img(save_dir, _get(b, "image"), f"per-channel box plot of {_get(b, 'name')}")
        figs.append(f'<figure class="wide"><div class="scroll">{img}</div>'
                    f'<figcaption>{" · ".join(facts)}{hint}</figcaption></figure>')
    if not figs:
        return ""
    return ('<section class="card" id="channelwise"><h2>Channel-wise distributions</h2><p class="muted small">Box plots of '
            "each channel (red: median, blue dashed: mean, dots: outliers). Wide figures scroll sideways.</p>"
            f'{"".join(figs)}</section>')


def _partial(p: Mapping[str, Any], save_dir: Path) -> str:
    nodes = _list(_get(p, "nodes"))
    single, partial, recovery = _list(_get(p, "single")), _list(_get(p, "partial")), _list(_get(p, "recovery"))
    metric = str(_get(p, "metric") or "cosine-similarity")
    rows = [f'<tr><td class="num" data-v="0">0</td><td class="name"><em>none</em> (calibrated model)</td><td class="num" data-v="">–</td>'
            f'{num_td(_get(p, "baseline"))}<td class="num" data-v="">–</td></tr>']
    for k, node in enumerate(nodes):
        at = lambda xs: xs[k] if k < len(xs) else None  # noqa: E731
        rows.append(f'<tr><td class="num" data-v="{k + 1}">{k + 1}</td>{text_td(node, "name mono")}{num_td(at(single))}'
                    f'{num_td(at(partial))}{num_td(at(recovery), sign=True)}</tr>')
    head = [("#", "num"), ("node", "text"), (f"only this node quantized{_direction(metric)}", "num"),
            (f"nodes 1..k kept in float{_direction(metric)}", "num"), ("recovery", "num")]
    info = [f"{esc(metric)}"]
    if _get(p, "pick_threshold") is not None:
        info.append(f"nodes picked at ≤ {esc(fmt(_get(p, 'pick_threshold')))}")
    if _get(p, "samples") is not None:
        info.append(f"{esc(_get(p, 'samples'))} samples")
    img = _img(save_dir, _get(p, "image"), "partial quantization figure") if _get(p, "image") else ""
    return (f'<section class="card" id="partial-quantization"><h2>Partial quantization</h2><p class="muted small">{" · ".join(info)}</p>'
            f'{f"<figure>{img}</figure>" if img else ""}<h3>Scores</h3>{_table(head, rows, "sortable")}</section>')


def _footer(r: Mapping[str, Any]) -> str:
    parts = []
    files = [f for f in _list(_get(r, "files")) if f]
    if files:
        items = []
        for f in files:
            rel = _safe_rel(f)
            items.append(f'<li><a href="{esc(rel)}">{esc(f)}</a></li>' if rel else f"<li>{esc(f)}</li>")
        parts.append(f"<details><summary>Files written ({len(files)})</summary><ul class=files>{''.join(items)}</ul></details>")
    timing = _map(r, "timing")
    if isinstance(timing, Mapping) and timing:
        steps = ", ".join(f"{esc(k)} {esc(fmt(v, 3))} s" for k, v in timing.items() if k != "total_s")
        total = f"total <b>{esc(fmt(_get(timing, 'total_s'), 3))} s</b>" if _get(timing, "total_s") is not None else ""
        parts.append(f"<p>Timing: {total}{' — ' if total and steps else ''}{steps}</p>")
    version = _get(r, "ptqdebug_version")
    parts.append(f"<p>Generated by ptqdebug{' ' + esc(version) if version else ''}.</p>")
    return f'<footer class="card" id="footer">{"".join(parts)}</footer>'


# --------------------------------------------------------------------------- page

def render_report(results: Mapping[str, Any], save_dir: str | os.PathLike[str]) -> str:
    """The report page as HTML text; images listed in ``results`` are read from ``save_dir``."""
    root = Path(save_dir)
    r = results if isinstance(results, Mapping) else {}
    sections: list[tuple[str, str, str]] = []  # (id, nav label, html)

    def add(sid: str, label: str, body: str) -> None:
        if body:
            sections.append((sid, label, body))

    if isinstance(_get(r, "verdict"), Mapping) and _get(r, "verdict"):
        add("verdict", "Verdict", _verdict(r["verdict"]))
    if isinstance(_get(r, "sensitivity"), Mapping):
        add("sensitivity", "Sensitivity", _sensitivity(r["sensitivity"]))
    add("accumulate-error", "Cumulative error", _accumulate(_list(_get(r, "accumulate_error")), root))
    add("distributions", "Distributions", _distributions(_list(_get(r, "distributions")), root))
    add("channelwise", "Channel-wise", _channelwise(_list(_get(r, "channelwise")), root))
    if isinstance(_get(r, "partial_quantization"), Mapping) and _get(r, "partial_quantization"):
        add("partial-quantization", "Partial quantization", _partial(r["partial_quantization"], root))
    nav = "".join(f'<li><a href="#{sid}">{label}</a></li>' for sid, label, _ in sections)
    script_hash = base64.b64encode(hashlib.sha256(SORT_JS.encode("utf-8")).digest()).decode("ascii")
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    model_path = _get(_map(r, "model"), "path")
    title = f"ptqdebug report — {os.path.basename(str(model_path))}" if model_path else "ptqdebug report"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f'<nav class="toc" aria-label="sections"><ul><li><a href="#overview">Overview</a></li>{nav}</ul></nav>',
        "<main>", _header(r), *(body for _, _, body in sections), _footer(r), "</main>",
        f"<script>{SORT_JS}</script></body></html>\n",
    ])


def write_report(results: Mapping[str, Any], save_dir: str | os.PathLike[str], name: str = "index.html") -> Path:
    """Render the page and write it atomically as ``save_dir/name``."""
    root = ensure_dir(save_dir)
    text = render_report(results, root)
    return write_atomic(root / name, lambda f: f.write(text))
