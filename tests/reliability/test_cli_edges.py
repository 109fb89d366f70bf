"""The command line in a real process: exactly one line per user error, a quiet closed pipe, list
values split by the shell, and node names that need quoting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from ptqdebug.cli import main
from ptqdebug.cli.args import normalize_argv
from tests.reliability.models import qdq_text_model, text_samples, write_folder


def _cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ptqdebug", *args], check=False, capture_output=True, text=True, timeout=300,
                          **kw)


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("text")
    onnx.save(qdq_text_model(), d / "m.onnx")
    return d / "m.onnx", write_folder(d / "data", text_samples(2))


def test_a_closed_output_pipe_ends_quietly(text: tuple[Path, Path]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ptqdebug", "info", str(text[0])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `ptqdebug info m.onnx | head -0`
    assert proc.wait(timeout=120) in (0, 141)
    assert b"Traceback" not in proc.stderr.read()


def test_a_list_split_by_the_shell_stops_at_the_next_option() -> None:
    # `-n [a, b` with a forgotten `]`: the next option is not swallowed into the list
    assert normalize_argv(["plot-distribution", "m", "d", "-n", "[a,", "b", "-s", "out"]) == \
        ["plot-distribution", "m", "d", "-n", "[a,", "b", "-s", "out"]
    assert normalize_argv(["plot-distribution", "m", "d", "-n", "[a,", "b]", "-s", "out"]) == \
        ["plot-distribution", "m", "d", "-n", "[a, b]", "-s", "out"]


def test_an_unclosed_list_names_the_problem(text: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, data = text
    assert main(["plot-distribution", str(model), str(data), "-n", "[Conv_4,", "Q_0", "-s", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ptqdebug: error: argument -n/--nodes_list: '[Conv_4,' has an unclosed '['; expected a matching ']' " \
                          "(see `ptqdebug plot-distribution --help`)"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name,spelled", [
    ("features[0]", "features[0]"),  # a plain value is one name, brackets and all
    ("a, b", "['a, b']"),
    ("it's", '["it\'s"]'),
    (" padded ", "[' padded ']"),
])
def test_names_that_need_quoting(name: str, spelled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = qdq_text_model()
    for node in model.graph.node:
        if node.name == "Conv_4":
            node.name = name
    onnx.save(model, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", text_samples(1))
    assert main(["get-sensitivity-of-nodes", str(tmp_path / "m.onnx"), str(data), "-i", spelled, "-s", str(tmp_path / "o")]) == 0
    import json

    assert list(json.loads((tmp_path / "o" / "sensitivity_of_node.json").read_text(encoding="utf-8"))) == [name]
    capsys.readouterr()


def test_missing_glyphs_are_not_reported_as_warnings(tmp_path: Path) -> None:
    model = qdq_text_model()
    for node in model.graph.node:
        node.name = {"Q_0": "输入/量化", "Conv_4": "卷积"}.get(node.name, node.name)
    onnx.save(model, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", text_samples(1))
    proc = _cli("plot-distribution", str(tmp_path / "m.onnx"), str(data), "-n", "[输入/量化,卷积]", "-s", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    assert len(list((tmp_path / "o").iterdir())) == 2


def test_a_runtime_failure_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,H,W] x) => (float[1,32] out)
    <float s = {0.05}, int8 z = {0}, int64[2] shape = {1, 32}> {
        qx = QuantizeLinear (x, s, z)
        dx = DequantizeLinear (qx, s, z)
        r = Relu (dx)
        out = Reshape (r, shape)
    }""")
    onnx.save(model, tmp_path / "m.onnx")
    data = write_folder(tmp_path / "d", [{"x": np.ones((1, 2, 5, 5), np.float32)}])  # 50 values, not 32
    proc = _cli("get-sensitivity-of-nodes", str(tmp_path / "m.onnx"), str(data))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert lines[-1].startswith("ptqdebug: error: ONNX Runtime cannot run the float model on sample 0"), proc.stderr
    assert len(lines) == 1, proc.stderr


# -- calibrate (owned by the calibration module; checked here without changing it) -----------------
CALIBRATE = [
    ("missing-model", ["calibrate", "{d}/nope.onnx", "{data}", "-o", "{out}"], "float model file '.*nope.onnx' does not exist"),
    ("missing-inputs", ["calibrate", "{float}", "{d}/nodata", "-o", "{out}"], "calibration inputs '.*nodata' do not exist"),
    ("output-is-a-file", ["calibrate", "{float}", "{data}", "-o", "{file}"], "output folder '.*afile' is a file"),
    ("already-calibrated", ["calibrate", "{model}", "{data}", "-o", "{out}"], "already has calibration nodes"),
    ("unknown-method", ["calibrate", "{float}", "{data}", "-o", "{out}", "--method", "nope"], "calibration method 'nope' is not supported"),
]


@pytest.fixture(scope="module")
def calib(cnn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("calib")
    (d / "afile").write_text("x")
    return {"d": str(d), "data": str(cnn_dir / "calibration_data"), "float": str(cnn_dir / "float.onnx"),
            "model": str(cnn_dir / "pc_int8_pairs.onnx"), "file": str(d / "afile")}


@pytest.mark.parametrize("case,argv,message", CALIBRATE, ids=[c[0] for c in CALIBRATE])
def test_calibrate_bad_inputs_are_one_line(case: str, argv: list[str], message: str, calib: dict[str, str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import re

    code = main([a.format(out=tmp_path / "out", **calib) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("ptqdebug: error: ") and re.search(message, err[0]), err


@pytest.mark.parametrize("case,argv,message", CALIBRATE[:2], ids=[c[0] for c in CALIBRATE[:2]])
def test_calibrate_bad_inputs_leave_no_output_folder(case: str, argv: list[str], message: str, calib: dict[str, str],
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.format(out=tmp_path / "out", **calib) for a in argv]) == 2
    capsys.readouterr()
    assert not (tmp_path / "out").exists()
