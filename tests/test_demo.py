"""`ptqdebug demo`: the whole journey, end to end, in a temporary directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ptqdebug.cli import main


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    acc = re.search(r"float (\d+\.\d+)%, quantized (\d+\.\d+)% \((\d+\.\d+)% as ONNX Runtime deploys it\)", out)
    assert acc and all(float(acc.group(i)) > 95 for i in (1, 2, 3))
    # the output's calibration node, which no node reads, is the most sensitive candidate here
    assert re.search(r"most sensitive nodes: logits_QuantizeLinear \(0\.\d{6}\), /\S+ \(0\.\d{6}\), /\S+ \(0\.\d{6}\)\n", out)
    # the two cosines printed rest on different samples, and say which
    assert "(mean of its 100 calibration samples)" in out and "runall on the first calibration sample (its default" in out
    root = tmp_path / "demo_result"
    assert (root / "calibration" / "calibrated_model.onnx").is_file()
    assert len(list((root / "calibration" / "calibration_data" / "image").glob("*.npy"))) == 100
    results = json.loads((root / "debug_result" / "results.json").read_text())
    assert results["verdict"]["summary"] in out
    assert results["deployment"]["agrees"] is True  # the demo checks the deployment too
    assert (root / "debug_result" / "index.html").is_file()
    assert f"report: {Path('demo_result') / 'debug_result' / 'index.html'}" in out


def test_demo_output_folder_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("a file")
    assert main(["demo", "-o", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err
