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
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..analyses.lost import LostChannels
from ..analyses.partial import apply_commands, check_command, unnamed_reason
from ..analyses.rangefit import RangeFit
from ..metrics import METRICS, known_metric
from .assets import REPORT_CSS, SORT_JS
from .files import ensure_dir, write_atomic
from .htmlparts import (  # noqa: F401  (fmt and CURVE_COLORS are re-exported for tests and callers)
    CAUSES,
    CURVE_COLORS,
    MIME,
    SERIES,
    TYPE_TITLES,
    as_list,
    count,
    embed_image,
    esc,
    fmt,
    get,
    img_tag,
    mapping,
    name_html,
    num,
    num_td,
    safe_rel,
    sortkey,
    table,
    text_td,
)
from .graphmap import graph_map
from .svg import svg_chart

__all__ = ["render_report", "write_report"]

def _kind_pill(kind: object) -> str:
    cls = f" kind-{kind}" if kind in ("weight", "activation", "node") else ""
    return f'<span class="pill{cls}">{esc(kind)}</span>'


def _metric_best(metric: object) -> float | None:
    m = METRICS.get(metric) if isinstance(metric, str) else None
    return m.best if m is not None and m.best is not None and math.isfinite(m.best) else None


def _direction(metric: str, higher: object = None) -> str:
    """The ↑/↓ mark of a metric: ``higher`` as the results recorded it (a user's metric, whose
    function this process may not know), else the metric's own."""
    if not isinstance(higher, bool):
        m = known_metric(metric)
        if m is None:
            return ""
        higher = m.higher_is_better
    return ' <span class="dir" title="higher is better">↑</span>' if higher else \
        ' <span class="dir" title="lower is better">↓</span>'


# --------------------------------------------------------------------------- sections

def _header(r: Mapping[str, Any]) -> str:
    model, data = mapping(r, "model"), mapping(r, "data")
    path = get(model, "path")
    cal = mapping(model, "calibration_nodes")
    items: list[tuple[str, str]] = []
    if get(model, "format"):
        items.append(("format", esc(get(model, "format"))))
    if isinstance(cal, Mapping) and cal:
        items.append(("calibration nodes", " · ".join(f"{esc(v)} {esc(k)}" for k, v in cal.items())))
    used, total = get(data, "samples_used"), get(data, "samples_total")
    if used is not None:
        items.append(("samples used", esc(used) + (f" of {esc(total)}" if total is not None else "")))
    if get(data, "source"):
        items.append(("data", f"<code>{esc(get(data, 'source'))}</code>"))
    for key in ("inputs", "outputs"):
        names = as_list(get(model, key))
        if names:
            shown = ", ".join(f"<code>{esc(n)}</code>" for n in names[:6]) + (f" … (+{len(names) - 6})" if len(names) > 6 else "")
            items.append((key, shown))
    meta = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items)
    notes = [n for n in as_list(get(model, "notes")) if n]
    notes_html = ("<div class=notes role=note><strong>Notes on this model</strong><ul>"
                  + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul></div>") if notes else ""
    name = os.path.basename(str(path)) if path else "PTQ accuracy report"
    sub = f'<p class="subtitle mono">{esc(path)}</p>' if path else ""
    return (f'<header class="card" id="overview"><h1>{esc(name)}</h1>{sub}'
            f'<dl class="meta">{meta}</dl>{notes_html}</header>')


def _pasteable(path: object) -> str | None:
    """A path from the results as the commands on the page give it: absolute where it exists
    from here (the page is opened from anywhere), as recorded otherwise; None where there is none."""
    if not isinstance(path, str) or not path:
        return None
    return os.path.abspath(path) if os.path.exists(path) else path


def _apply(v: Mapping[str, Any], model: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> str:
    """How to make the model with the recommended nodes in float (``Verdict.keep_float``) or their
    activations in int16 (``Verdict.keep_int16``), or nothing. Those are the table's rows up to the
    best score, less the rows that add nothing to it (``Verdict.kept``)."""
    names = [str(n) for n in as_list(get(v, "keep_float")) if isinstance(n, str)]
    names16 = [str(n) for n in as_list(get(v, "keep_int16")) if isinstance(n, str)]
    if not names and not names16:
        return ""
    order = [get(r, "node") for r in as_list(get(v, "recommendations"))]
    kept = mapping(v, "kept")

    def rows(chosen: list[str], qtype: str) -> str:
        at = [order.index(n) + 1 for n in chosen if n in order]
        if len(at) != len(chosen):  # not the table's nodes (results edited by hand)
            which = f"{len(chosen)} node{'s' * (len(chosen) > 1)}"
        elif at == list(range(1, len(at) + 1)):
            which = f"rows 1..{len(at)}" if len(at) > 1 else "row 1"
        else:
            which = f"row{'s' * (len(at) > 1)} {', '.join(map(str, at))}: the others up to the best add nothing"
        score = get(mapping(kept, qtype), "score")
        return which + (f", {fmt(score)}" if isinstance(score, (int, float)) else "")

    them = lambda k: "them" if k > 1 else "it"  # noqa: E731
    if "horizon" in str(get(model, "format") or ""):  # export and calibrate write QDQ models
        parts = ([f'<p>To apply {rows(names, "float32")}, list {them(len(names))} in the original toolchain\'s '
                  f'<code>run_on_cpu</code>:</p><code class="mono">{esc(", ".join(names))}</code>'] if names else [])
        parts += ([f'<p>For int16 instead ({rows(names16, "int16")}), give {them(len(names16))} '
                   f'<code>InputType: int16</code> in <code>node_info</code>:</p><code class="mono">{esc(", ".join(names16))}</code>']
                  if names16 else [])
        return f'<div class="apply">{"".join(parts)}</div>'
    path, float_path = _pasteable(get(model, "path")), _pasteable(get(model, "float_model"))
    renamed = [str(n) for n in as_list(get(model, "renamed"))]
    not_in_float = [str(n) for n in as_list(get(model, "not_in_float"))]
    parts = []
    if names:
        export, calibrate = apply_commands(names, path, "float32", float_path, renamed, not_in_float)
        parts.append(f"<p>To apply the best score ({rows(names, 'float32')}), write this model with {them(len(names))} in "
                     "float, exactly the configuration scored (run as ptqdebug runs it; check-deployment says how "
                     f"ONNX Runtime's defaults run it):</p><code class=\"mono\">{esc(export)}</code>")
        if calibrate is None:
            parts.append(f"<p>({esc(unnamed_reason(names, renamed, not_in_float))}.)</p>")
        else:
            parts.append(f"<p>or calibrate the float model again with {them(len(names))} kept in float (in Python "
                         f"<code>float_nodes=</code>; the original toolchain's <code>run_on_cpu</code>):</p>"
                         f'<code class="mono">{esc(calibrate)}</code>')
    if names16:
        export16, _ = apply_commands(names16, path, "int16", float_path)
        parts.append(f"<p>With activations in int16 instead (the best int16 score, {rows(names16, 'int16')}):</p>"
                     f'<code class="mono">{esc(export16)}</code>')
    source = _pasteable(get(data or {}, "source"))
    check = check_command(bool(names), bool(names16), source if source and os.path.exists(source) else None)
    parts.append("<p>Then check the written model as ONNX Runtime deploys it, on these samples and on held-out ones "
                 f'(the nodes were chosen on these):</p><code class="mono">{esc(check)}</code>')
    return f'<div class="apply">{"".join(parts)}</div>'


T = TypeVar("T")


def _records(items: object, cls: Callable[..., T]) -> list[T]:
    """The verdict's records of ``cls`` (``Verdict.lost``, ``Verdict.fits``) back from the results;
    none where older results lack them, and not one edited by hand out of shape."""
    out = []
    for x in as_list(items):
        try:
            out.append(cls(**x))
        except TypeError:
            continue
    return out


def _fits(v: Mapping[str, Any]) -> dict[str, RangeFit]:
    """The verdict's range fits by calibration node."""
    return {f.quantizer: f for f in _records(get(v, "fits"), RangeFit)}


def _fit_td(fits: Sequence[RangeFit]) -> str:
    """A row's range cell: its worst fit (:attr:`RangeFit.severity`), the advice on hover."""
    if not fits:
        return '<td class="small muted">–</td>'
    worst = max(fits, key=lambda f: f.severity)
    tip = worst.advice() or (f"{worst.quantizer}: {worst.clipped:.2%} clipped, {worst.used:.0%} of its {worst.qtype} levels "
                             f"reached, {worst.zeroed:.0%} of its non-zero values rounded to 0")
    cls = "small" + (" muted" if worst.fits else " warn-text")
    return f'<td class="{cls}" title="{esc(tip)}">{esc(worst.brief())}</td>'


def _lost_alert(v: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    """Output channels a calibration node rounds to 0 entirely (``Verdict.lost``), first and in
    red: the scores can look fine while a detector finds nothing."""
    out = []
    for found in _records(get(v, "lost"), LostChannels):
        export, _ = apply_commands([found.quantizer], _pasteable(get(model, "path")), "float32", _pasteable(get(model, "float_model")))
        out.append(f'<div class="deploy bad"><strong>Output channels lost</strong> {esc(found.describe())}. A score over '
                   "the whole output hides it where the other channels are larger, yet the task can fail (a detector's "
                   "class scores beside its box coordinates). If they carry information, keep that calibration node in "
                   f'float:<br><code class="mono">{esc(export)}</code></div>')
    return "".join(out)


def _deployment(d: Mapping[str, Any], title: str = "Deployment check") -> str:
    """A deployment check's verdict (runall ``check_deployment=True``), or nothing."""
    if not get(d, "summary"):
        return ""
    state = "bad" if get(d, "agrees") is not True else "warn" if get(d, "narrow") is True else "ok"
    return f'<div class="deploy {state}"><strong>{esc(title)}</strong> {esc(get(d, "summary"))}</div>'


def _verdict(v: Mapping[str, Any], local: Mapping[str, Any], deployment: Mapping[str, Any],
             model: Mapping[str, Any], fixes: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None) -> str:
    metric = str(get(v, "metric") or "cosine-similarity")
    cause = str(get(v, "cause") or "")
    ccls = f"cause-{cause}" if cause in CAUSES else ""
    out = [f'<section class="card verdict {ccls}" id="verdict"><h2>Verdict</h2>', _lost_alert(v, model)]
    if get(v, "summary"):
        out.append(f'<p class="headline">{esc(get(v, "summary"))}</p>')
    if cause:
        reference = "the model with its stored integer weights" if cause == "unknown" else "float model"
        out.append(f'<p>Main cause: <span class="pill {ccls}">{esc(CAUSES.get(cause, cause))}</span> '
                   f'<span class="muted small">({esc(metric)} at the model outputs; {reference} = '
                   f'{esc(fmt(_metric_best(metric)))})</span></p>')
    deploy_html = _deployment(deployment)
    if get(deployment, "agrees") is not True:
        out.append(deploy_html)  # the deployment computes something else: that comes first
    scores = mapping(v, "scores")
    tiles = [("calibrated", "Calibrated model"), ("only_weight", "Only weights quantized"),
             ("only_activation", "Only activations quantized")]
    present = [(k, label, num(get(scores, k))) for k, label in tiles if get(scores, k) is not None]
    if present:
        worst = {"weight": "only_weight", "activation": "only_activation"}.get(cause)
        out.append('<div class="tiles">' + "".join(
            f'<div class="tile{" worst" if k == worst else ""}"><div class="label">{label}</div>'
            f'<div class="value">{esc(fmt(val))}</div></div>' for k, label, val in present) + "</div>")
    if get(deployment, "agrees") is True:
        out.append(deploy_html)
    recs = [x for x in as_list(get(v, "recommendations")) if isinstance(x, Mapping)]
    if recs:
        base, best = num(get(scores, "calibrated")), _metric_best(metric)
        show_cals = any(as_list(get(rec, "calibration_nodes")) not in ([], [get(rec, "node")]) for rec in recs)
        own = {get(e, "node"): get(mapping(e, "scores"), metric) for e in as_list(get(local, "entries")) if isinstance(e, Mapping)}
        wider = any(isinstance(x, float) and math.isfinite(x) for x in (num(get(rec, "score_int16")) for rec in recs))
        left_out = {k for k, rec in enumerate(recs) if get(rec, "left_out") is True}  # rows scored in int16 only
        fits = _fits(v)
        rows = []
        for i, rec in enumerate(recs, 1):
            cals = as_list(get(rec, "calibration_nodes"))
            cal_html = ", ".join(f"<code>{name_html(c)}</code>" for c in cals[:4]) + (f" … (+{len(cals) - 4})" if len(cals) > 4 else "")
            after = num(get(rec, "score_after"))
            bar = ""
            if base is not None and best is not None and after is not None and math.isfinite(base) and math.isfinite(after) and best != base:
                share = (after - base) / (best - base)  # negative: worse than the calibrated model
                frac = min(max(share, 0.0), 1.0)
                bar = (f'<div class="bar" title="share of the gap to the float model closed"><span style="width:{frac * 100:.1f}%">'
                       f'</span><em>{"worse" if share < 0 else f"{frac * 100:.0f}%"}</em></div>')
            cal_td = f'<td class="small">{cal_html}</td>' if show_cals else ""
            own_td = num_td(own.get(get(rec, "node"))) if own else ""
            fit_td = _fit_td([fits[c] for c in cals if c in fits]) if fits else ""
            int16_td = num_td(get(rec, "score_int16")) if wider else ""
            float_tds = (f'{num_td(get(rec, "score_after"))}{num_td(get(rec, "recovery"), sign=True)}'
                         if i - 1 not in left_out else  # scored in int16 only
                         '<td class="num small muted" data-v="" title="with this row too in float, no calibration node '
                         'would be on">left out</td><td class="num" data-v="">–</td>')
            rows.append(f'<tr><td class="num" data-v="{i}">{i}</td>{text_td(get(rec, "node"), "name mono")}{cal_td}'
                        f'{float_tds}{int16_td}{own_td}{fit_td}<td>{bar}</td></tr>')
        head = [("#", "num"), ("keep in higher precision", "text")] + ([("its calibration nodes", "text")] if show_cals else []) + [
                (f"score after keeping 1..k{_direction(metric)}", "num"), ("recovers", "num")] + (
                [(f"1..k in int16 instead{_direction(metric)}", "num")] if wider else []) + (
                [(f"its own score{_direction(metric)}", "num")] if own else []) + (
                [("its range", "text")] if fits else []) + [("gap to float closed", "text")]
        if any((num(get(r, "recovery")) or 0) > 0 for r in recs):
            lead = "Un-quantize the nodes in this order; each row is the score with rows 1..k kept in float."
        elif len(left_out) < len(recs):
            lead = "Keeping these nodes in float recovers nothing here (each row is the score with rows 1..k kept in float)."
        else:
            lead = ""
        out.append("<h3>What to keep in higher precision</h3>"
                   "<p class=\"muted small\">" + lead
                   + (" <em>Left out</em>: with that row too in float, no calibration node would be on (the float model, "
                      "not a partial quantization), so it is scored in int16 only." if left_out else "")
                   + (" <em>Its own score</em>: the node's error by itself (only its calibration nodes on, everything upstream "
                      "float, compared at its outputs); a good own score with a large recovery means the network amplifies a "
                      "small error."
                      if own else "")
                   + (" <em>1..k in int16 instead</em>: the same rows with their activations in int16 (weights stay 8-bit) "
                      "rather than float, the original toolchain's other remedy." if wider else "")
                   + (" <em>Its range</em>: how its activations' calibration ranges fit their values (the share clipped, or "
                      "the levels one-sided values reach under a symmetric range); hover for the numbers." if fits else "")
                   + "</p>"
                   + table(head, rows, "recs cals" if show_cals else "recs") + _apply(v, model, data)
                   + "".join(_deployment(mapping(fixes or {}, qtype), f"Deployment check of the model {what}")
                             for qtype, what in (("float32", "with them in float"), ("int16", "with their activations in int16"))))
    out.append("</section>")
    return "".join(out)


def _sensitivity(sens: Mapping[str, Any], unowned: Sequence[Any] = ()) -> str:
    """The sweeps' tables; ``unowned``: calibration nodes no node reads (node sweep candidates of their own)."""
    parts = []
    for typ in [t for t in ("weight", "activation", "node") if t in sens] + [t for t in sens if t not in ("weight", "activation", "node")]:
        res = sens[typ]
        entries = [e for e in as_list(get(res, "entries")) if isinstance(e, Mapping)]
        if not entries:
            continue
        metrics = [str(m) for m in as_list(get(res, "metrics"))] or list(dict.fromkeys(k for e in entries for k in mapping(e, "scores")))
        has = {k: any(get(e, k) not in (None, "", []) for e in entries) for k in ("node", "threshold", "bits")}
        show_q = any(as_list(get(e, "quantizers")) != [get(e, "name")] for e in entries)
        higher = mapping(res, "higher_is_better")
        head = [("#", "num"), ("name", "text")] + [(esc(m) + _direction(m, get(higher, m)), "num") for m in metrics]
        head += [(label, t) for key, label, t in (("node", "read by", "text"), ("threshold", "threshold", "num"), ("bits", "bits", "num")) if has[key]]
        if show_q:
            head.append(("calibration nodes", "text"))
        rows = []
        nonfinite = 0
        for i, e in enumerate(entries, 1):
            scores = mapping(e, "scores")
            vals = [num(get(scores, m)) for m in metrics]
            bad = bool(get(e, "nonfinite")) or any(v is not None and not math.isfinite(v) for v in vals[:1])
            nonfinite += bad
            cells = [f'<td class="num" data-v="{i}">{i}</td>', text_td(get(e, "name"), "name mono")]
            cells += [num_td(get(scores, m)) for m in metrics]
            if has["node"]:
                cells.append(text_td(get(e, "node"), "name small"))
            if has["threshold"]:
                cells.append(num_td(get(e, "threshold")))
            if has["bits"]:
                cells.append(num_td(get(e, "bits")))
            if show_q:
                qs = as_list(get(e, "quantizers"))
                cells.append(f'<td class="small">{", ".join(esc(q) for q in qs[:3])}{f" … (+{len(qs) - 3})" if len(qs) > 3 else ""}</td>')
            rows.append(f'<tr{" class=nonfinite" if bad else ""}>{"".join(cells)}</tr>')
        info = [f"{count(len(entries), 'entry', 'entries')}, worst first"]
        alone = sum(typ == "node" and get(e, "name") in unowned for e in entries)
        if alone:  # candidates_for: a calibration node no node reads (a model output's), scored alone
            info.append(f"{count(alone, 'output calibration node')} among them, which no node reads, scored alone")
        if get(res, "samples") is not None:
            info.append(count(get(res, "samples"), "sample"))
        compared = as_list(get(res, "compared"))
        if compared:
            info.append("compared at " + ", ".join(f"<code>{esc(c)}</code>" for c in compared[:4]) + (" …" if len(compared) > 4 else ""))
        if nonfinite:
            info.append(f'<span class="nf">{nonfinite} non-finite (highlighted)</span>')
        parts.append(f'<h3 id="sensitivity-{esc(typ)}">{esc(TYPE_TITLES.get(typ, typ))}</h3>'
                     f'<p class="muted small">{" · ".join(info)}. Click a column header to sort.</p>'
                     + table(head, rows, "sortable"))
    if not parts:
        return ""
    return ('<section class="card" id="sensitivity"><h2>Sensitivity</h2><p class="muted small">Error at the model '
            "outputs when only this node is quantized (everything else float).</p>" + "".join(parts) + "</section>")


def _graph(graph: Mapping[str, Any], node_sweep: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    """The model's graph coloured by the node sweep (:mod:`ptqdebug.report.graphmap`), or nothing."""
    if not node_sweep:
        return ""
    lost = [str(get(x, "quantizer")) for x in as_list(get(verdict, "lost")) if isinstance(x, Mapping)]
    body = graph_map(graph, node_sweep, [str(n) for n in as_list(get(verdict, "keep_float"))], lost)
    if not body:
        return ""
    compared = as_list(get(node_sweep, "compared"))
    at = (" at " + ", ".join(f"<code>{esc(c)}</code>" for c in compared[:3]) + (" …" if len(compared) > 3 else "")) if compared else ""
    return ('<section class="card" id="graph"><h2>Where in the graph</h2><p class="muted small">Every ordinary node, inputs '
            f"at the top, coloured by what quantizing only that node costs{at} (the node sweep). Hover a node for its "
            "name and score; scroll to follow the graph.</p>" + body + "</section>")


def _accumulate(items: Sequence[Any], save_dir: Path) -> str:
    parts = []
    counts = {num(get(acc, "samples")) or 1 for acc in items if isinstance(acc, Mapping)}
    on = (f"the mean over the first {int(max(counts))} calibration samples" if max(counts, default=1) > 1
          else "on the first calibration sample (as the original draws them)")
    for acc in items:
        if not isinstance(acc, Mapping):
            continue
        chart = svg_chart(acc)
        figure = img_tag(save_dir, get(acc, "image"), f"{get(acc, 'prefix')} figure") if get(acc, "image") else ""
        if not chart and not figure:
            continue
        static = f"<details><summary>static figure</summary><figure>{figure}</figure></details>" if figure else ""
        parts.append(f'<h3>{esc(get(acc, "prefix"))} <span class="muted small">({esc(get(acc, "metric"))})</span></h3>{chart}{static}')
    if not parts:
        return ""
    return ('<section class="card" id="accumulate-error"><h2>Cumulative error</h2><p class="muted small">Error at every '
            f"node output with all upstream calibration nodes on, in graph order, {on}. Hover a point for its node and "
            "value.</p>"
            + "".join(parts) + "</section>")


def _distributions(items: Sequence[Any], save_dir: Path) -> str:
    figs = []
    for d in items:
        if not isinstance(d, Mapping):
            continue
        facts = [f'<strong class="mono">{name_html(get(d, "name"))}</strong> {_kind_pill(get(d, "kind"))}']
        if get(d, "tensor") and get(d, "tensor") != get(d, "name"):
            facts.append(f"tensor <code>{name_html(get(d, 'tensor'))}</code>")
        for key, label in (("cosine", "cosine"), ("abs_max", "abs max"), ("threshold", "threshold")):
            if get(d, key) is not None:
                facts.append(f"{label} <b>{esc(fmt(get(d, key)))}</b>")
        series = mapping(d, "series")
        rows = "".join(f"<tr><td>{esc(SERIES.get(k, k))}</td>" + "".join(num_td(get(s, c)) for c in ("min", "max", "mean", "std"))
                       + f"{num_td(get(s, 'size'))}</tr>" for k, s in series.items()) if isinstance(series, Mapping) else ""
        table = ('<div class="stats"><table><thead><tr><th>series</th><th class=num>min</th><th class=num>max</th><th class=num>mean</th>'
                 f'<th class=num>std</th><th class=num>size</th></tr></thead><tbody>{rows}</tbody></table></div>') if rows else ""
        figure = img_tag(save_dir, get(d, "image"), f"distribution of {get(d, 'name')}")
        figs.append(f'<figure>{figure}'
                    f'<figcaption>{" · ".join(facts)}{table}</figcaption></figure>')
    if not figs:
        return ""
    return ('<section class="card" id="distributions"><h2>Data distributions</h2><p class="muted small">Histograms of '
            "float (\"before calibration\") and quantized (\"after\") values of the most sensitive nodes, where the "
            "float value is not exactly 0 (values rounded to 0 stay): weights as stored, "
            "activations on the first calibration sample (as the original draws them).</p>"
            f'<div class="figs">{"".join(figs)}</div></section>')


def _channelwise(items: Sequence[Any], save_dir: Path) -> str:
    figs = []
    for b in items:
        if not isinstance(b, Mapping):
            continue
        facts = [f'<strong class="mono">{name_html(get(b, "name"))}</strong> {_kind_pill(get(b, "kind"))}']
        for key, label in (("channels", "channels"), ("axis", "axis"), ("max_abs", "max |x|")):
            if get(b, key) is not None:
                facts.append(f"{label} <b>{esc(fmt(get(b, key)))}</b>")
        ratio = num(get(b, "range_ratio_max_to_median"))
        hint = ""
        if ratio is not None:
            facts.append(f"widest channel range = <b>{esc(fmt(ratio, 4))}×</b> the median channel's")
            if math.isfinite(ratio) and ratio >= 10:
                hint = ('<div class="hint">Channel ranges differ a lot: a single per-tensor scale spends most levels '
                        "on the widest channels (per-channel quantization or equalization helps).</div>")
        figure = img_tag(save_dir, get(b, "image"), f"per-channel box plot of {get(b, 'name')}")
        figs.append(f'<figure class="wide"><div class="scroll">{figure}</div>'
                    f'<figcaption>{" · ".join(facts)}{hint}</figcaption></figure>')
    if not figs:
        return ""
    return ('<section class="card" id="channelwise"><h2>Channel-wise distributions</h2><p class="muted small">Box plots of '
            "each channel (red: median, blue dashed: mean, dots: outliers); activations on the first calibration sample. "
            "Wide figures scroll sideways.</p>"
            f'{"".join(figs)}</section>')


def _partial(p: Mapping[str, Any], save_dir: Path) -> str:
    nodes = as_list(get(p, "nodes"))
    single, partial, recovery = as_list(get(p, "single")), as_list(get(p, "partial")), as_list(get(p, "recovery"))
    metric = str(get(p, "metric") or "cosine-similarity")
    rows = [f'<tr><td class="num" data-v="0">0</td><td class="name"><em>none</em> (calibrated model)</td><td class="num" data-v="">–</td>'
            f'{num_td(get(p, "baseline"))}<td class="num" data-v="">–</td></tr>']
    def at(xs: list[Any], k: int) -> Any:
        return xs[k] if k < len(xs) else None

    for k, node in enumerate(nodes):
        rows.append(f'<tr><td class="num" data-v="{k + 1}">{k + 1}</td>{text_td(node, "name mono")}{num_td(at(single, k))}'
                    f'{num_td(at(partial, k))}{num_td(at(recovery, k), sign=True)}</tr>')
    head = [("#", "num"), ("node", "text"), (f"only this node quantized{_direction(metric)}", "num"),
            (f"nodes 1..k kept in float{_direction(metric)}", "num"), ("recovery", "num")]
    info = [f"{esc(metric)}"]
    if get(p, "pick_threshold") is not None:
        info.append(f"nodes picked at ≤ {esc(fmt(get(p, 'pick_threshold')))}")
    if get(p, "samples") is not None:
        info.append(count(get(p, "samples"), "sample"))
    left_out = [str(n) for n in as_list(get(p, "left_out"))]
    if left_out:
        info.append(f"left out: {esc(', '.join(left_out))} (with {'it' if len(left_out) == 1 else 'them'} too in float, "
                    "no calibration node would be on)")
    figure = img_tag(save_dir, get(p, "image"), "partial quantization figure") if get(p, "image") else ""
    return (f'<section class="card" id="partial-quantization"><h2>Partial quantization</h2><p class="muted small">{" · ".join(info)}</p>'
            f'{f"<figure>{figure}</figure>" if figure else ""}<h3>Scores</h3>{table(head, rows, "sortable")}</section>')


def _seconds(v: object) -> str:
    """A step's time: 3 significant digits, or "< 1 ms" for a step that did not run."""
    x = num(v)
    return "< 1 ms" if x is not None and 0 <= x < 1e-3 else f"{esc(fmt(v, 3))} s"


def _footer(r: Mapping[str, Any]) -> str:
    parts = []
    files = [f for f in as_list(get(r, "files")) if f]
    if files:
        items = []
        for f in files:
            rel = safe_rel(f)
            items.append(f'<li><a href="{esc(rel)}">{esc(f)}</a></li>' if rel else f"<li>{esc(f)}</li>")
        parts.append(f"<details><summary>Files written ({len(files)})</summary><ul class=files>{''.join(items)}</ul></details>")
    timing = mapping(r, "timing")
    if isinstance(timing, Mapping) and timing:
        steps = ", ".join(f"{esc(str(k).removesuffix('_s').replace('_', ' '))} {_seconds(v)}"
                          for k, v in timing.items() if k != "total_s")
        # total_s: the analyses, from the start of runall (its figures are drawn alongside, and may finish later)
        total = f"analyses <b>{esc(fmt(get(timing, 'total_s'), 3))} s</b>" if get(timing, "total_s") is not None else ""
        parts.append(f"<p>Timing: {total}{' — ' if total and steps else ''}{steps}</p>")
    version = get(r, "ptqdebug_version")
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

    if isinstance(get(r, "verdict"), Mapping) and get(r, "verdict"):
        add("verdict", "Verdict", _verdict(r["verdict"], mapping(r, "local_error"), mapping(r, "deployment"),
                                          mapping(r, "model"), mapping(r, "fix_deployment"), mapping(r, "data")))
    if isinstance(get(r, "sensitivity"), Mapping):
        add("sensitivity", "Sensitivity", _sensitivity(r["sensitivity"], as_list(get(mapping(r, "model"), "unowned"))))
    add("graph", "Graph", _graph(mapping(r, "graph"), mapping(mapping(r, "sensitivity"), "node"), mapping(r, "verdict")))
    add("accumulate-error", "Cumulative error", _accumulate(as_list(get(r, "accumulate_error")), root))
    add("distributions", "Distributions", _distributions(as_list(get(r, "distributions")), root))
    add("channelwise", "Channel-wise", _channelwise(as_list(get(r, "channelwise")), root))
    if isinstance(get(r, "partial_quantization"), Mapping) and get(r, "partial_quantization"):
        add("partial-quantization", "Partial quantization", _partial(r["partial_quantization"], root))
    nav = "".join(f'<li><a href="#{sid}">{label}</a></li>' for sid, label, _ in sections)
    script_hash = base64.b64encode(hashlib.sha256(SORT_JS.encode("utf-8")).digest()).decode("ascii")
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    model_path = get(mapping(r, "model"), "path")
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
