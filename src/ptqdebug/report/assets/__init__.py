"""The HTML report's stylesheet and script, inlined into every page (no network, no files to ship).

Kept as Python strings so that they travel with the package without any package-data setup.
"""

from __future__ import annotations

__all__ = ["REPORT_CSS", "SORT_JS"]

REPORT_CSS = """
:root {
  --fg: #1f2328; --muted: #59636e; --bg: #f3f5f8; --card: #ffffff; --line: #d8dee4; --soft: #f6f8fa;
  --accent: #0969da; --bad: #cf222e; --bad-bg: #ffebe9; --warn-bg: #fff8c5; --warn-line: #d4a72c;
  --good: #1a7f37; --good-bg: #dafbe1; --weight: #bc4c00; --activation: #8250df; --both: #cf222e; --none: #1a7f37; --unknown: #6e7781;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg); line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans", Arial, sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: .9em; }
code { overflow-wrap: anywhere; }
main { max-width: 1200px; margin: 0 auto; padding: 0 20px 40px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; letter-spacing: -.01em; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 0 0 .75rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px; margin: 18px 0;
  box-shadow: 0 1px 2px rgba(31,35,40,.04); }
.muted { color: var(--muted); }
.small { font-size: .85rem; }
nav.toc { position: sticky; top: 0; z-index: 10; background: rgba(243,245,248,.94); backdrop-filter: blur(4px);
  border-bottom: 1px solid var(--line); }
nav.toc ul { max-width: 1200px; margin: 0 auto; padding: 8px 20px; list-style: none; display: flex; flex-wrap: wrap; gap: 4px 18px; }
nav.toc a { color: var(--muted); font-size: .9rem; font-weight: 500; } nav.toc a:hover { color: var(--accent); }
header.card { margin-top: 22px; }
.subtitle { color: var(--muted); margin: 0 0 14px; overflow-wrap: anywhere; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 10px 24px; margin: 0; }
dl.meta div { min-width: 0; } dl.meta dt { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
dl.meta dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.notes { background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 8px; padding: 10px 16px; margin-top: 16px; }
.notes strong { display: block; margin-bottom: 2px; } .notes ul { margin: 0; padding-left: 20px; }
.verdict { border-left: 6px solid var(--accent); }
.verdict.cause-weight { border-left-color: var(--weight); } .verdict.cause-activation { border-left-color: var(--activation); }
.verdict.cause-both { border-left-color: var(--both); } .verdict.cause-none { border-left-color: var(--none); } .verdict.cause-unknown { border-left-color: var(--unknown); }
.deploy { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; margin: 12px 0; background: var(--soft); }
.deploy strong { display: block; margin-bottom: 2px; } .deploy.ok { border-color: var(--good); background: var(--good-bg); }
.deploy.bad { border-color: var(--bad); background: var(--bad-bg); }
.deploy.warn { border-color: var(--warn-line); background: var(--warn-bg); }
.apply > code { display: block; margin: 4px 0; padding: 6px 10px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; overflow-wrap: anywhere; }
.apply p { margin: 8px 0 2px; }
.headline { font-size: 1.3rem; font-weight: 650; margin: 0 0 10px; line-height: 1.4; overflow-wrap: anywhere; }
.pill { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: .85rem; font-weight: 600; color: #fff; background: var(--accent); }
.pill.cause-weight { background: var(--weight); } .pill.cause-activation { background: var(--activation); }
.pill.cause-both { background: var(--both); } .pill.cause-none { background: var(--none); } .pill.cause-unknown { background: var(--unknown); }
.pill.kind-weight { background: var(--weight); } .pill.kind-activation { background: var(--activation); }
.pill.kind-node { background: #57606a; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; margin: 16px 0 4px; }
.tile { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.tile .label { color: var(--muted); font-size: .85rem; }
.tile .value { font-size: 1.45rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile.worst { border-color: var(--bad); background: var(--bad-bg); } .tile.worst .value { color: var(--bad); }
.table-wrap { overflow: auto; max-height: 32rem; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { padding: 6px 10px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { position: sticky; top: 0; background: var(--soft); z-index: 1; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; } tbody tr:hover { background: #eef4fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: break-word; min-width: 14rem; }
td.small { overflow-wrap: anywhere; max-width: 24rem; }
td.nf { color: var(--bad); font-weight: 700; }
tr.nonfinite, tr.nonfinite:nth-child(even) { background: var(--bad-bg); }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: "\\2195"; color: #9aa4ae; margin-left: 4px; font-size: .8em; }
table.sortable th[aria-sort="ascending"]::after { content: "\\25B2"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: "\\25BC"; color: var(--accent); }
table.sortable th:focus-visible { outline: 2px solid var(--accent); outline-offset: -2px; }
.warn-text { color: #9a6700; font-weight: 600; }
.dir { color: var(--muted); font-weight: 400; font-size: .8em; }
table.recs thead th { white-space: normal; min-width: 5rem; } table.recs thead th:first-child { min-width: 0; }
.bar { position: relative; height: 1.2em; min-width: 7rem; background: #eaeef2; border-radius: 4px; overflow: hidden; }
.bar span { position: absolute; inset: 0 auto 0 0; background: #4ac26b; }
.bar em { position: relative; font-style: normal; font-size: .8rem; padding-left: 6px; font-variant-numeric: tabular-nums; }
.chart { margin: 8px 0 4px; }
.chart svg { width: 100%; height: auto; display: block; background: #fff; }
.chart svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: var(--muted); }
.chart svg .grid { stroke: #e6eaef; } .chart svg .axis { stroke: #8c959f; }
.chart svg circle { stroke: #fff; stroke-width: .8; } .chart svg circle:hover { r: 5; }
.chart svg .nfm { stroke: var(--bad); stroke-width: 2; }
.gmap { max-height: 80vh; overflow: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; margin-top: 6px; }
.gmap svg { display: block; margin: 0 auto; }
.gmap svg text { font: 10px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; text-anchor: middle; pointer-events: none; }
.gmap svg text.rank { font-size: 9px; font-weight: 700; text-anchor: end; fill: var(--muted); }
.gmap svg text.gname { font: 10px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; text-anchor: start; fill: var(--fg);
  paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.gmap svg .edges path { fill: none; stroke: #8c959f; stroke-width: 1; opacity: .55; }
.gmap svg .gnode rect { stroke: #8c959f; stroke-width: .8; }
.gmap svg .gnode.none rect { stroke-dasharray: 3 2; }
.gmap svg .gnode.kept rect { stroke: var(--accent); stroke-width: 2.5; }
.gmap svg .gnode.nf rect { stroke: var(--bad); stroke-width: 2.5; }
.gmap svg .gnode.lost rect { stroke: var(--bad); stroke-width: 2.5; stroke-dasharray: 5 2; }
.gmap svg .gnode:hover rect { stroke: var(--fg); stroke-width: 2; }
.gmap-legend .ramp { display: inline-block; width: 90px; height: 10px; vertical-align: middle; margin-right: 6px; border-radius: 2px;
  background: linear-gradient(90deg, #fef9c3, #fde68a 35%, #f97316 70%, #991b1b); border: 1px solid var(--line); }
.gmap-legend .swatch { display: inline-block; width: 16px; height: 10px; vertical-align: middle; margin-right: 4px; border-radius: 2px;
  border: 1px dashed #8c959f; background: #fff; }
.gmap-legend .swatch.kept { border: 2.5px solid var(--accent); }
ul.legend { list-style: none; padding: 0; margin: 4px 0 0; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: .88rem; }
ul.legend i { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: 6px; border-radius: 2px; }
ul.legend i.x { width: auto; height: auto; color: var(--bad); font-style: normal; font-weight: 700; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: #fff; min-width: 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figure.wide .scroll { overflow-x: auto; } figure.wide img { max-width: none; max-height: 420px; }
figcaption { margin-top: 8px; font-size: .88rem; overflow-wrap: anywhere; }
.stats { overflow-x: auto; margin-top: 6px; }
.stats table { font-size: .78rem; } .stats th, .stats td { padding: 2px 6px; }
.missing { color: var(--bad); font-size: .85rem; }
details { margin-top: 10px; } summary { cursor: pointer; color: var(--accent); }
.hint { background: var(--soft); border-radius: 6px; padding: 6px 10px; font-size: .85rem; margin-top: 6px; }
footer { color: var(--muted); font-size: .88rem; }
footer ul.files { columns: 2 320px; margin: 4px 0 0; padding-left: 18px; }
@media (max-width: 700px) {
  main { padding: 0 10px 30px; } .card { padding: 14px; } .headline { font-size: 1.12rem; }
  .figs { grid-template-columns: minmax(0, 1fr); }
}
@media (max-width: 900px) {  /* the calibration nodes' names (in the sensitivity tables too) would squeeze the scores out */
  table.recs.cals th:nth-child(3), table.recs.cals td:nth-child(3) { display: none; }
}
@media print { nav.toc { display: none; } .table-wrap { max-height: none; } }
"""

# Sorts every ``table.sortable`` on a header click (or Enter/Space). Cells carry their sort key in
# ``data-v`` (numbers as JavaScript understands them: NaN, Infinity, -Infinity; "" for no value).
# NaN sorts before every number ascending (it is the worst score) and after them descending; empty
# cells always go last; ties keep their current order.
SORT_JS = """
(function () {
  "use strict";
  function rank(cell, numeric) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null) { v = cell ? cell.textContent.trim() : ""; }
    if (v === "") { return { g: 2, k: 0 }; }
    if (!numeric) { return { g: 1, k: v.toLowerCase() }; }
    if (v === "NaN") { return { g: 0, k: 0 }; }
    var f = parseFloat(v);
    return isNaN(f) ? { g: 2, k: 0 } : { g: 1, k: f };
  }
  function sortTable(table, col, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var numeric = th.getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (r, i) {
      var x = rank(r.cells[col], numeric);
      x.row = r; x.i = i;
      return x;
    });
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      if (a.g === 2 || b.g === 2) { return a.g !== b.g ? (a.g === 2 ? 1 : -1) : a.i - b.i; }
      if (a.g !== b.g) { return sign * (a.g - b.g); }
      if (a.k < b.k) { return -sign; }
      if (a.k > b.k) { return sign; }
      return a.i - b.i;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (x) { frag.appendChild(x.row); });
    body.appendChild(frag);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, col, th); }
      });
    });
  });
  document.documentElement.setAttribute("data-js", "ready");
})();
"""
