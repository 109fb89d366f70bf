"""The HTML report: checked at the DOM level with the standard library's parser."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ptqdebug.analyses.sensitivity import SensitivityEntry, SensitivityResult
from ptqdebug.report.assets import SORT_JS
from ptqdebug.report.files import dump_json
from ptqdebug.report.html import fmt, render_report, write_report
from tests.plots.helpers import HOSTILE, make_accumulate, make_partial

ORDER = ["overview", "verdict", "sensitivity", "accumulate-error", "distributions", "channelwise", "partial-quantization", "footer"]


class Dom(HTMLParser):
    """Collects what the tests look at: ids of top-level blocks, tags, attributes and text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("header", "section", "footer") and a.get("id"):
            self.blocks.append(a["id"] or "")
        self._in_script = tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.script_text if self._in_script else self.text).append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(attrs[k] in (a.get(k) or "").split() for k in attrs)]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def sensitivity(node_type: str, names: list[str], scores: list[float]) -> dict[str, Any]:
    entries = tuple(SensitivityEntry(n, (n,), {"cosine-similarity": s, "mse": 1 - s}, nonfinite=not math.isfinite(s))
                    for n, s in zip(names, scores))
    return json.loads(json.dumps(SensitivityResult(node_type, ("cosine-similarity", "mse"), entries, ("out",), 2).to_dict()))


@pytest.fixture
def results(tiny_png: Callable[[str], str]) -> dict[str, Any]:
    acc = make_accumulate({"weight_activation_calibrated": [1.0, math.nan, 0.98, math.inf, 0.95],
                           "only_weight_calibrated": [1.0, 0.999, 0.998, 0.997, 0.996]},
                          nodes=["/a/Conv", HOSTILE, "/c/Conv", "/d/Conv", "/e/Conv"])
    pq = make_partial(nodes=(HOSTILE, "/c/Conv"), single=(math.nan, 0.99), partial=(0.97, 0.99))
    return {
        "ptqdebug_version": "9.9.9",
        "model": {"path": "/models/m_calibrated.onnx", "format": "qdq", "calibration_nodes": {"weight": 3, "activation": 4},
                  "notes": [f"suspicious node {HOSTILE}"], "inputs": ["x"], "outputs": ["y"]},
        "data": {"source": "calibration_data/", "samples_used": 2, "samples_total": 10},
        "verdict": {"metric": "cosine-similarity", "cause": "activation", "summary": "Activation quantization hurts most.",
                    "scores": {"calibrated": 0.95, "only_weight": 0.999, "only_activation": 0.951},
                    "recommendations": [{"node": HOSTILE, "calibration_nodes": [HOSTILE + "_q"], "score_after": 0.97, "recovery": 0.02},
                                        {"node": "/c/Conv", "calibration_nodes": ["/c/Conv_q"], "score_after": 0.99, "recovery": 0.02}]},
        "sensitivity": {"weight": sensitivity("weight", ["w1", "w2"], [0.9995, 0.99999994]),
                        "activation": sensitivity("activation", [HOSTILE, "a2", "a3"], [math.nan, 0.98, 0.99])},
        "accumulate_error": [json.loads(json.dumps(acc.to_dict())) | {"image": tiny_png("accumulate_error/x.png")}],
        "partial_quantization": json.loads(json.dumps(pq.to_dict())) | {"image": tiny_png("sensitivity_analysis/partial_quantization.png")},
        "distributions": [{"name": HOSTILE, "kind": "activation", "tensor": "t", "abs_max": 3.0, "threshold": 2.0, "cosine": None,
                           "series": {"input": {"min": 0.0, "max": 3.0, "mean": 1.0, "std": 0.5, "size": 10}},
                           "image": tiny_png("data_distribution/activation_x.png")}],
        "channelwise": [{"name": "w1", "kind": "weight", "tensor": "w1", "axis": 0, "channels": 8, "max_abs": 3.0,
                         "range_ratio_max_to_median": 12.5, "image": tiny_png("channelwise_distribution/w1_boxplot.png")}],
        "files": ["node_sensitivity/sensitivity_of_weight.log", "javascript:alert(1)", "../outside.txt"],
        "timing": {"total_s": 3.5, "sensitivity": 2.0},
    }


def encoded(results: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The dict as runall writes and reads it: non-finite floats become "nan"/"inf" strings."""
    dump_json(tmp_path / "results.json", results)
    return json.loads((tmp_path / "results.json").read_text())


def test_sections_in_order_and_self_contained(results: dict[str, Any], tmp_path: Path) -> None:
    page = render_report(encoded(results, tmp_path), tmp_path)
    dom = Dom(page)
    assert dom.blocks == ORDER
    imgs = dom.find("img")
    assert len(imgs) == 4
    for img in imgs:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page
    assert not dom.find("link") and all("src" not in a for t, a in dom.tags if t == "script")
    (csp,) = [a["content"] for a in dom.find("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()
    assert "default-src 'none'" in csp and f"'sha256-{digest}'" in csp
    assert SORT_JS in dom.script_text


def test_untrusted_strings_are_escaped_everywhere(results: dict[str, Any], tmp_path: Path) -> None:
    page = render_report(encoded(results, tmp_path), tmp_path)
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    dom = Dom(page)
    assert len(dom.find("script")) == 1
    assert HOSTILE in dom.all_text  # shown to the reader as text
    hrefs = [a.get("href") or "" for a in dom.find("a")]
    assert "node_sensitivity/sensitivity_of_weight.log" in hrefs
    assert not [h for h in hrefs if h.startswith("javascript") or ".." in h]


def test_verdict_first_with_scores_and_recommendations(results: dict[str, Any], tmp_path: Path) -> None:
    dom = Dom(render_report(encoded(results, tmp_path), tmp_path))
    text = dom.all_text
    assert text.index("Activation quantization hurts most.") < text.index("Weight calibration nodes")
    for expected in ("activation quantization", "0.95", "0.999", "0.951", "What to keep in higher precision", "+0.02"):
        assert expected in text
    assert dom.find("div", **{"class": "worst"})  # the tile of the cause stands out
    assert dom.find("section", **{"class": "cause-activation"})


def test_recommendations_show_the_local_error_when_runall_gave_it(results: dict[str, Any], tmp_path: Path) -> None:
    header = "its own score"
    assert header not in Dom(render_report(encoded(results, tmp_path), tmp_path)).all_text  # not computed: no column
    local = {"metrics": ["cosine-similarity"], "samples": 2,
             "entries": [{"node": HOSTILE, "quantizers": [HOSTILE + "_q"], "outputs": ["t"], "scores": {"cosine-similarity": 0.9991234}}]}
    dom = Dom(render_report(encoded(results | {"local_error": local}, tmp_path), tmp_path))
    assert header in dom.all_text and "0.999123" in dom.all_text
    assert dom.find("table", **{"class": "recs"})
    for broken in ("nonsense", ["x"], {"entries": "x"}, {"entries": [{"node": HOSTILE, "scores": "x"}]}):
        render_report(encoded(results | {"local_error": broken}, tmp_path), tmp_path)  # untrusted input never breaks the page


def test_how_to_apply_the_recommendation(results: dict[str, Any], tmp_path: Path) -> None:
    import shlex

    assert "--float-nodes" not in render_report(encoded(results, tmp_path), tmp_path)  # no keep_float: no hint
    verdict = results["verdict"] | {"keep_float": [HOSTILE, "/c/Conv"]}
    page = render_report(encoded(results | {"verdict": verdict}, tmp_path), tmp_path)
    assert HOSTILE not in page
    text = Dom(page).all_text
    listed, model = shlex.quote("[" + HOSTILE + ",/c/Conv]"), shlex.quote(results["model"]["path"])
    assert f"ptqdebug export {model} -o partial.onnx --float-nodes {listed}" in text and "To apply the best score (rows 1..2)" in text
    # rows that add nothing left out (Verdict.kept): which rows, and their score
    pruned = results["verdict"] | {"keep_float": ["/c/Conv"], "kept": {"float32": {"nodes": ["/c/Conv"], "score": 0.991}}}
    text_pruned = Dom(render_report(encoded(results | {"verdict": pruned}, tmp_path), tmp_path)).all_text
    assert "To apply the best score (row 2: the others up to the best add nothing, 0.991)" in text_pruned
    assert f"ptqdebug calibrate FLOAT_MODEL INPUTS -o OUT --float-nodes {listed}" in text
    # int16 scores: a column, and the command that writes the best int16 rows
    recs16 = [r | {"score_int16": 0.99123} for r in results["verdict"]["recommendations"]]
    page16 = render_report(encoded(results | {"verdict": verdict | {"recommendations": recs16, "keep_int16": [HOSTILE]}}, tmp_path),
                           tmp_path)
    text16 = Dom(page16).all_text
    assert "1..k in int16 instead" in text16 and "0.99123" in text16
    assert f"ptqdebug export {model} -o partial_int16.onnx --int16-nodes {shlex.quote('[' + HOSTILE + ']')}" in text16
    assert "1..k in int16 instead" not in text  # not scored: no column
    horizon = results | {"verdict": verdict, "model": results["model"] | {"format": "horizon"}}
    text = Dom(render_report(encoded(horizon, tmp_path), tmp_path)).all_text
    assert "run_on_cpu" in text and f"{HOSTILE}, /c/Conv" in text and "ptqdebug export" not in text
    for broken in ("x", [3], {"a": 1}):
        render_report(encoded(results | {"verdict": results["verdict"] | {"keep_float": broken}}, tmp_path), tmp_path)


def test_deployment_check_in_the_verdict_when_runall_ran_it(results: dict[str, Any], tmp_path: Path) -> None:
    assert "Deployment check" not in Dom(render_report(encoded(results, tmp_path), tmp_path)).all_text  # not run: nothing
    for agrees, state in ((True, "ok"), (False, "bad")):
        deployment = {"agrees": agrees, "summary": f"ONNX Runtime as deployed ... ({HOSTILE})"}
        page = render_report(encoded(results | {"deployment": deployment}, tmp_path), tmp_path)
        assert HOSTILE not in page  # the summary names calibration nodes: escaped
        dom = Dom(page)
        (box,) = dom.find("div", **{"class": "deploy"})
        assert state in (box["class"] or "").split()
        assert "Deployment check" in dom.all_text and HOSTILE in dom.all_text
        # a disagreement comes before the score tiles, an agreement after them
        assert (page.index("deploy " + state) < page.index('class="tiles"')) == (not agrees)
    for broken in ("nonsense", ["x"], {"summary": 3}, {"agrees": "yes", "summary": "x"}):
        render_report(encoded(results | {"deployment": broken}, tmp_path), tmp_path)  # untrusted input never breaks the page


def test_sensitivity_tables_sortable_with_nonfinite_highlighted(results: dict[str, Any], tmp_path: Path) -> None:
    dom = Dom(render_report(encoded(results, tmp_path), tmp_path))
    tables = dom.find("table", **{"class": "sortable"})
    assert len(tables) == 3  # weight, activation, partial quantization
    assert len(dom.find("tr", **{"class": "nonfinite"})) == 1
    nf_cells = dom.find("td", **{"class": "nf"})
    assert {c.get("data-v") for c in nf_cells} >= {"NaN"}
    assert "nan" in dom.all_text
    assert "0.9999999" in dom.all_text  # 6 significant digits would have shown "1"
    assert {a.get("data-type") for a in dom.find("th")} >= {"num", "text"}


def test_counts_read_as_english(results: dict[str, Any], tmp_path: Path) -> None:
    text = Dom(render_report(encoded(results, tmp_path), tmp_path)).all_text
    assert "2 entries, worst first · 2 samples" in text  # the weight table
    one = json.loads(json.dumps(SensitivityResult("weight", ("cosine-similarity",), (SensitivityEntry("w1", ("w1",), {"cosine-similarity": 0.9}),),
                                                  ("out",), 1).to_dict()))
    text = Dom(render_report(encoded(results | {"sensitivity": {"weight": one}}, tmp_path), tmp_path)).all_text
    assert "1 entry, worst first · 1 sample ·" in text and "1 samples" not in text


def test_accumulate_svg_hover_titles_and_nonfinite_markers(results: dict[str, Any], tmp_path: Path) -> None:
    page = render_report(encoded(results, tmp_path), tmp_path)
    dom = Dom(page)
    circles = dom.find("circle")
    assert len(circles) == 3 + 5  # finite points of both curves
    assert len(dom.find("path", **{"class": "nfm"})) == 2  # nan at #1, inf at #3
    text = dom.all_text
    assert "#1 " + HOSTILE in text and "= nan (non-finite)" in text and "= inf (non-finite)" in text
    xs = sorted({float(c["cx"] or 0) for c in circles})
    assert len(xs) == 5  # every index has its own x: nothing shifted
    assert "non-finite (gap in the line)" in text


def test_missing_sections_are_omitted(tmp_path: Path) -> None:
    for results in ({}, {"model": None, "verdict": None, "sensitivity": None, "accumulate_error": None, "partial_quantization": None,
                         "distributions": None, "channelwise": None, "files": None, "timing": None},
                    {"sensitivity": {"weight": {"entries": []}}, "accumulate_error": [{"curves": []}], "verdict": {}}):
        dom = Dom(render_report(results, tmp_path))
        assert dom.blocks == ["overview", "footer"]


def test_images_outside_save_dir_or_missing_are_not_read(tmp_path: Path, tiny_png: Callable[[str], str]) -> None:
    inside = tmp_path / "run"
    inside.mkdir()
    secret = tiny_png("secret.png")  # in tmp_path, outside the save_dir
    results = {"distributions": [{"name": "a", "kind": "weight", "image": f"../{secret}"},
                                 {"name": "b", "kind": "weight", "image": str(tmp_path / secret)},
                                 {"name": "c", "kind": "weight", "image": "missing.png"}]}
    page = render_report(results, inside)
    assert "data:image" not in page
    assert page.count('class="missing"') == 3


def test_write_report_is_atomic(results: dict[str, Any], tmp_path: Path) -> None:
    out = write_report(encoded(results, tmp_path), tmp_path)
    assert out == tmp_path / "index.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    other = write_report({}, tmp_path / "new", name="report.html")
    assert other.is_file()


def test_number_formatting() -> None:
    assert fmt(0.123456789) == "0.123457"
    assert fmt(0.99999994) == "0.9999999"  # as many digits as it takes not to read "1"
    assert fmt(1.0) == "1"
    assert fmt("nan") == "nan" and fmt("inf") == "inf" and fmt("-inf") == "-inf"
    assert fmt(float("nan")) == "nan"
    assert fmt(None) == "–" and fmt("garbage") == "–"
    assert fmt(0.02, sign=True) == "+0.02"


def test_curve_colours_match_the_figures() -> None:
    from ptqdebug.plots._base import CURVE_COLORS as FIGURE_COLORS
    from ptqdebug.report.html import CURVE_COLORS

    assert CURVE_COLORS == FIGURE_COLORS


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(), reason="no Chromium")
def test_report_in_a_headless_browser(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_report.py"
    proc = subprocess.run([sys.executable, str(script), "--screenshot", str(tmp_path / "shot.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("results", [
    {"verdict": "str", "sensitivity": [1, 2], "accumulate_error": "x", "distributions": [None, 1, "a"], "channelwise": {"a": 1},
     "partial_quantization": {"nodes": "abc"}, "model": {"calibration_nodes": [1], "notes": "a note", "inputs": "x"},
     "timing": [1], "files": "abc"},
    {"sensitivity": {"weight": {"entries": [{"name": None}, {"scores": None}, 5]}},
     "verdict": {"scores": None, "recommendations": [None, {"node": 1}]}},
    {"accumulate_error": [{"curves": [{"values": [1e308, -1e308, "x", None]}, {"values": "abc"}]}]},
    {"partial_quantization": {"nodes": ["a"], "single": None, "partial": [1], "recovery": "x", "baseline": "nan"}},
    {"channelwise": [{"name": "a", "range_ratio_max_to_median": "inf"}], "distributions": [{"series": {"x": None}}]},
    {"model": {"path": 5, "notes": [None, 3]}, "timing": {"total_s": "abc", "3": 4}, "ptqdebug_version": ["x"]},
])
def test_malformed_results_still_render(results: dict[str, Any], tmp_path: Path) -> None:
    dom = Dom(render_report(results, tmp_path))
    assert dom.blocks[0] == "overview" and dom.blocks[-1] == "footer"


def test_footer_times_of_steps_that_did_not_run() -> None:
    """A step that did not run took 7.12e-07 s, which the footer printed as such."""
    from ptqdebug.report.html import _seconds

    assert [_seconds(v) for v in (7.12e-07, 0.0, 0.0305, 12.345, None)] == ["< 1 ms", "< 1 ms", "0.0305 s", "12.3 s", "– s"]
