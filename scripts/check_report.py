#!/usr/bin/env python3
"""Render an HTML report and check it in a real headless browser (Chromium).

    python scripts/check_report.py --screenshot report.png                      # synthetic results
    python scripts/check_report.py --results debug_result/results.json --save-dir debug_result --screenshot report.png

Checks, in order:

1. static: the page names no ``http://``/``https://`` resource, carries a Content-Security-Policy,
   embeds every image as a ``data:`` URI, and hostile node names appear only escaped;
2. in Chromium (``--dump-dom`` on a copy of the page with a small test script added): the page's own
   script ran under its CSP, no script error and no CSP violation happened, no resource was fetched,
   every image decoded, and clicking each header of each sortable table sorts it ascending then
   descending;
3. a screenshot of the unmodified page (``--screenshot``), to be looked at.

Chromium is not a dependency of ptqdebug; on Debian: ``apt-get install -y chromium``.
Exit status: 0 all checks passed, 1 a check failed, 2 no browser (or bad arguments).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

HOSTILE = "<script>alert(1)</script>"

# Runs first in the test copy: records errors and CSP violations, then on load checks images and
# sorts every sortable table by every column, both directions, and writes the outcome into the DOM.
HARNESS_JS = r"""
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push("error: " + (e.message || e.type)); }, true);
  document.addEventListener("securitypolicyviolation", function (e) { errors.push("csp: " + e.violatedDirective + " " + e.blockedURI); });
  function keyOf(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent.trim(); }
    return v;
  }
  function ordered(values, numeric, dir) {
    var prev = null;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === "") { continue; }
      if (numeric && v === "NaN") {
        if (dir === "ascending" && prev !== null && prev !== "NaN") { return false; }
        prev = prev === null ? "NaN" : prev; continue;
      }
      var k = numeric ? parseFloat(v) : v.toLowerCase();
      if (prev !== null && prev !== "NaN") {
        if (dir === "ascending" ? k < prev : k > prev) { return false; }
      }
      if (dir === "descending" && numeric && prev === "NaN") { return false; }
      prev = k;
    }
    return true;
  }
  window.addEventListener("load", function () {
    var out = { errors: errors, js_ready: document.documentElement.getAttribute("data-js") === "ready",
                tables: 0, sorts: 0, failed_sorts: [], images: 0, broken_images: 0, resources: [] };
    Array.prototype.forEach.call(document.images, function (img) {
      out.images++;
      if (!img.complete || img.naturalWidth === 0 || img.src.indexOf("data:") !== 0) { out.broken_images++; }
    });
    (performance.getEntriesByType("resource") || []).forEach(function (r) {
      if (r.name.indexOf("data:") !== 0) { out.resources.push(r.name); }
    });
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table, t) {
      out.tables++;
      var n = table.tHead.rows[0].cells.length, count = table.tBodies[0].rows.length;
      for (var c = 0; c < n; c++) {
        ["ascending", "descending"].forEach(function (dir) {
          var th = table.tHead.rows[0].cells[c];
          th.click();
          var numeric = th.getAttribute("data-type") === "num";
          var values = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return keyOf(r.cells[c]); });
          out.sorts++;
          if (th.getAttribute("aria-sort") !== dir || values.length !== count || !ordered(values, numeric, dir)) {
            out.failed_sorts.push("table " + t + " column " + c + " " + dir);
          }
        });
      }
      table.tHead.rows[0].cells[0].click();  // back to rank order
    });
    document.body.setAttribute("data-selftest", JSON.stringify(out));
  });
})();
"""


# --------------------------------------------------------------------------- synthetic results

def synthetic_results(save_dir: Path) -> dict[str, Any]:
    """A realistic ``results`` dict (with its figures) built from real result objects."""
    from ptqdebug.analyses.accumulate import AccumulateErrorResult, ErrorCurve
    from ptqdebug.analyses.distribution import ChannelBoxes, Distribution
    from ptqdebug.analyses.partial import PartialQuantizationResult
    from ptqdebug.analyses.sensitivity import SensitivityEntry, SensitivityResult
    from ptqdebug.plots import (accumulate_error_figure, channel_boxes_figure, distribution_figure,
                                partial_quantization_figure, save_figure)
    from ptqdebug.report.files import safe_filename

    rng = np.random.default_rng(7)
    n = 48
    nodes = [f"/backbone/stage{i // 8}/block{i % 8}/conv/Conv" for i in range(n)]
    nodes[5] = HOSTILE
    tensors = [f"{nd}_output_0" for nd in nodes]

    def decay(rate: float) -> np.ndarray:
        return 1.0 - np.cumsum(rng.random(n) * rate)

    calib, only_a, only_w = decay(0.0009), decay(0.0007), decay(0.0002)
    calib[17] = np.nan
    only_a[30] = np.inf
    acc = AccumulateErrorResult("weight_activation_quantized_separately", "cosine-similarity", tuple(tensors), tuple(nodes),
                                (ErrorCurve("weight_activation_calibrated", tuple(map(float, calib)), 96),
                                 ErrorCurve("only_activation_calibrated", tuple(map(float, only_a)), 48),
                                 ErrorCurve("only_weight_calibrated", tuple(map(float, only_w)), 48)))
    files: list[str] = []

    def save(fig: Any, rel: str) -> str:
        save_figure(fig, save_dir / rel)
        files.append(rel)
        return rel

    acc_d = acc.to_dict() | {"image": save(accumulate_error_figure(acc), "accumulate_error/weight_activation_quantized_separately_cosine-similarity.png")}

    def sens(node_type: str, names: list[str], scores: list[float], **extra: Any) -> dict[str, Any]:
        entries = []
        for name, s in zip(names, scores):
            entries.append(SensitivityEntry(name, (name,), {"cosine-similarity": s, "mse": (1 - s) * 3.1 if math.isfinite(s) else s},
                                            nonfinite=not math.isfinite(s), node=extra.get("node", {}).get(name, ""),
                                            threshold=extra.get("threshold", {}).get(name), bits=8 if node_type == "activation" else None))
        entries.sort(key=lambda e: (not e.nonfinite, e.scores["cosine-similarity"]))
        return SensitivityResult(node_type, ("cosine-similarity", "mse"), tuple(entries), ("output",), 4).to_dict()

    w_names = [f"{nd.rsplit('/', 1)[0]}/weight_QuantizeLinear" for nd in nodes[:24]]
    a_names = [f"{nd}_input_QuantizeLinear" for nd in nodes[:24]]
    a_names[3] = HOSTILE + "_input"
    a_scores = list(1 - rng.random(24) ** 4 * 0.02)
    a_scores[7] = math.nan
    sensitivity = {
        "weight": sens("weight", w_names, list(1 - rng.random(24) ** 4 * 0.003), node={w: nodes[i] for i, w in enumerate(w_names)}),
        "activation": sens("activation", a_names, a_scores, node={a: nodes[i] for i, a in enumerate(a_names)},
                           threshold={a: float(rng.random() * 8) for a in a_names}),
    }

    dists, boxes = [], []
    x = np.maximum(rng.normal(size=20000), 0).astype(np.float32) * 3
    d = Distribution(a_names[3], "activation", tensors[3], {"input": x}, float(np.abs(x).max()), threshold=6.5)
    w = (rng.normal(size=4096) * 0.08).astype(np.float32)
    s = float(np.abs(w).max() / 127)
    wq = (np.round(w / s) * s).astype(np.float32)
    dw = Distribution(w_names[0], "weight", "conv0.weight", {"float": w, "quantized": wq}, float(np.abs(w).max()), cosine=0.999512)
    f = rng.normal(size=8000).astype(np.float32)
    q = f + rng.normal(size=8000).astype(np.float32) * 0.06
    dn = Distribution(nodes[5], "node", tensors[5], {"float": f, "quantized": q, "error": f - q}, float(np.abs(f).max()), cosine=0.99821)
    for dd in (d, dw, dn):
        rel = f"data_distribution/{dd.kind}_{safe_filename(dd.name)}.png"
        dists.append(dd.summary() | {"image": save(distribution_figure(dd), rel)})
    for name, kind, c in ((w_names[0], "weight", 32), (a_names[3], "activation", 300)):
        data = rng.normal(size=(c, 400)) * (0.2 + rng.random((c, 1)) ** 3 * 6)
        q1, med, q3 = np.percentile(data, [25, 50, 75], axis=1)
        iqr = q3 - q1
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        wl = np.array([r[r >= v].min() for r, v in zip(data, lo)])
        wh = np.array([r[r <= v].max() for r, v in zip(data, hi)])
        fl = tuple(r[(r < a) | (r > b)][:20] for r, a, b in zip(data, wl, wh))
        b = ChannelBoxes(name, kind, name, 0 if kind == "weight" else 1, q1, med, q3, data.mean(1), wl, wh, data.min(1), data.max(1), fl)
        boxes.append(b.summary() | {"image": save(channel_boxes_figure(b), f"channelwise_distribution/{safe_filename(name)}_boxplot.png")})

    worst = [e["name"] for e in sensitivity["activation"]["entries"][:5]]
    partial = PartialQuantizationResult("cosine-similarity", 0.999, tuple(worst), 0.96213, (float("nan"), 0.9931, 0.9952, 0.9968, 0.9975),
                                        (0.9791, 0.9877, 0.9934, 0.9958, 0.9969), 4)
    pq = partial.to_dict() | {"image": save(partial_quantization_figure(partial), "sensitivity_analysis/partial_quantization.png")}
    recs = [{"node": nd, "calibration_nodes": [nd], "score_after": p, "recovery": r}
            for nd, p, r in zip(worst[:3], partial.partial, partial.recovery())]
    files += ["node_sensitivity/sensitivity_of_weight.log", "node_sensitivity/sensitivity_of_activation.log", "results.json", "index.html"]

    def enc(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [enc(x) for x in v]
        return v

    return enc({
        "ptqdebug_version": "0.1.0",
        "model": {"path": "/models/resnet18_calibrated_model.onnx", "format": "qdq",
                  "calibration_nodes": {"weight": 24, "activation": 24},
                  "notes": ["2 activation calibration nodes have a zero scale; they are treated as lossless.",
                            f"node names are shown escaped, e.g. {HOSTILE}"],
                  "inputs": ["images"], "outputs": ["logits"]},
        "data": {"source": "calibration_data/", "samples_used": 4, "samples_total": 100},
        "verdict": {"metric": "cosine-similarity", "cause": "activation",
                    "summary": "Activation quantization causes most of the loss (cosine 0.96213); keeping 3 activation "
                               "calibration nodes in higher precision recovers 0.99344.",
                    "scores": {"calibrated": 0.96213, "only_weight": 0.99871, "only_activation": 0.96402},
                    "recommendations": recs},
        "deployment": {"agrees": True, "summary": "ONNX Runtime as deployed (default optimizations, CPUExecutionProvider) "
                       "agrees with ptqdebug's simulation: cosine-similarity against float 0.962271 deployed, 0.962130 "
                       "simulated; deployed against simulated 0.999412, closer than quantization's own error, so the "
                       "analyses describe the deployed model."},
        "sensitivity": sensitivity,
        "accumulate_error": [acc_d],
        "partial_quantization": pq,
        "distributions": dists,
        "channelwise": boxes,
        "files": files,
        "timing": {"total_s": 12.84, "sensitivity": 7.9, "accumulate_error": 1.2, "distributions": 0.8,
                   "channelwise": 0.6, "partial_quantization": 2.3},
    })


# --------------------------------------------------------------------------- checks

def find_chromium(explicit: str | None) -> str | None:
    for c in ([explicit] if explicit else []) + ["/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(c) if c else None
        if path:
            return path
    return None


def chromium(binary: str, profile: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
             "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=timeout, check=False)


def static_checks(page: str, results: dict[str, Any]) -> list[str]:
    problems = []
    for url in re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>]*", page):
        problems.append(f"external reference: {url[:80]}")
    if 'http-equiv="Content-Security-Policy"' not in page:
        problems.append("no Content-Security-Policy")
    if HOSTILE in page:
        problems.append("a hostile node name appears unescaped")
    scripts = re.findall(r"<script\b", page)
    if len(scripts) != 1:
        problems.append(f"expected exactly one <script>, found {len(scripts)}")
    images = re.findall(r'<img src="([^"]{0,40})', page)
    expected = sum(1 for k in ("accumulate_error", "distributions", "channelwise") for x in results.get(k) or [] if x.get("image"))
    expected += bool((results.get("partial_quantization") or {}).get("image"))
    if len(images) != expected or not all(s.startswith("data:image/") for s in images):
        problems.append(f"expected {expected} embedded images, found {len(images)}: {[s[:20] for s in images]}")
    return problems


def test_copy(page: str) -> str:
    """The page with the harness script first in <head>, allowed by adding its hash to the CSP."""
    digest = base64.b64encode(hashlib.sha256(HARNESS_JS.encode()).digest()).decode()
    page, count = re.subn(r"script-src ('sha256-[^']+')", rf"script-src \1 'sha256-{digest}'", page, count=1)
    if not count:
        raise SystemExit("could not find the CSP script-src of the page")
    return page.replace('<meta name="viewport"', f"<script>{HARNESS_JS}</script><meta name=\"viewport\"", 1)


def browser_checks(binary: str, page: str, work: Path) -> tuple[list[str], dict[str, Any]]:
    test_page = work / "selftest.html"
    test_page.write_text(test_copy(page), encoding="utf-8")
    proc = chromium(binary, work / "profile-dom", "--virtual-time-budget=15000", "--dump-dom", test_page.as_uri())
    m = re.search(r'data-selftest="([^"]*)"', proc.stdout)
    if not m:
        return [f"no self-test result in the dumped DOM (exit {proc.returncode}): {proc.stderr[-800:]}"], {}
    import html as _html

    out = json.loads(_html.unescape(m.group(1)))
    problems = []
    if not out["js_ready"]:
        problems.append("the page's own script did not run (blocked by its CSP?)")
    problems += [f"page {e}" for e in out["errors"]]
    problems += [f"fetched {r}" for r in out["resources"]]
    if out["broken_images"]:
        problems.append(f"{out['broken_images']} of {out['images']} images did not decode")
    problems += [f"sort failed: {s}" for s in out["failed_sorts"]]
    if HOSTILE in proc.stdout:
        problems.append("a hostile node name became markup in the live DOM")
    return problems, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, help="results.json to render (default: synthetic results)")
    ap.add_argument("--save-dir", type=Path, help="folder the image paths are relative to (default: the results file's folder)")
    ap.add_argument("--screenshot", type=Path, required=True, help="where to write the PNG screenshot")
    ap.add_argument("--window-size", default="1400,3000", help="browser window W,H for the screenshot (default 1400,3000)")
    ap.add_argument("--chromium", help="browser binary (default: /usr/bin/chromium, or chromium on PATH)")
    ap.add_argument("--keep", type=Path, help="folder to keep the rendered index.html (and the synthetic figures) in")
    args = ap.parse_args(argv)

    from ptqdebug.report.html import render_report

    binary = find_chromium(args.chromium)
    if binary is None:
        print("no Chromium found: install it (Debian: apt-get install -y chromium) or pass --chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ptqdebug-report-") as tmp:
        work = Path(tmp)
        if args.results:
            results = json.loads(args.results.read_text(encoding="utf-8"))
            save_dir = args.save_dir or args.results.parent
        else:
            save_dir = args.keep or work / "debug_result"
            results = synthetic_results(save_dir)
        out_dir = args.keep or work
        out_dir.mkdir(parents=True, exist_ok=True)
        page_path = out_dir / "index.html"
        page_path.write_text(render_report(results, save_dir), encoding="utf-8")
        page = page_path.read_text(encoding="utf-8")
        problems = static_checks(page, results)
        for p in problems:
            print(f"FAIL static: {p}")
        print(f"static checks: {'ok' if not problems else 'FAILED'} ({len(page) / 1e6:.2f} MB page)")

        bproblems, out = browser_checks(binary, page, work)
        for p in bproblems:
            print(f"FAIL browser: {p}")
        if out:
            print(f"browser checks: {'ok' if not bproblems else 'FAILED'} (script ran: {out['js_ready']}, {out['images']} images, "
                  f"{out['tables']} sortable tables, {out['sorts']} sorts, {len(out['errors'])} errors, {len(out['resources'])} fetches)")
        problems += bproblems

        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        shot = args.screenshot.resolve()
        proc = chromium(binary, work / "profile-shot", f"--window-size={args.window_size}", "--virtual-time-budget=5000",
                        f"--screenshot={shot}", page_path.resolve().as_uri())
        if not shot.is_file() or shot.stat().st_size == 0:
            problems.append(f"no screenshot written (exit {proc.returncode}): {proc.stderr[-500:]}")
            print(f"FAIL screenshot: {problems[-1]}")
        else:
            print(f"screenshot: {shot}")
    print("ALL CHECKS PASSED" if not problems else f"{len(problems)} PROBLEM(S)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
