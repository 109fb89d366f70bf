"""``order="greedy"``: each next node is the one that adds most to those before it, checked step by
step against a brute force (the file with those QDQ pairs cut, one ONNX Runtime session each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.partial import PartialQuantizationResult, partial_quantization
from ptqdebug.cli import main
from ptqdebug.context import open_context
from ptqdebug.metrics import METRICS, compare
from tests.support.oracle import oracle_from_file


def test_greedy_order_matches_brute_force(cnn_dir: Path, samples: list) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    ctx = open_context(path, cnn_dir / "calibration_data")
    model = ctx.model
    nodes = list(model.sensitivity_nodes[:5])
    got = partial_quantization(ctx, nodes, data_num=2, order="greedy")
    assert got.order == "greedy" and sorted(got.nodes) == sorted(nodes)
    cos = METRICS["cosine-similarity"]
    all_on = [q.name for q in model.quantizers]

    def brute(off: set[str]) -> float:
        enabled = [q for q in all_on if q not in off]
        return float(np.mean([compare([cos], oracle_from_file(path, [], s, ["logits"])["logits"],
                                      oracle_from_file(path, enabled, s, ["logits"])["logits"])[0] for s in samples[:2]]))

    chosen: set[str] = set()
    for k, node in enumerate(got.nodes):
        remaining = [n for n in nodes if n not in got.nodes[:k]]
        options = {n: brute(chosen | set(model.expand(n))) for n in remaining}
        assert options[node] == pytest.approx(max(options.values()), abs=1e-6), f"step {k + 1}"  # the best addition
        assert got.partial[k] == pytest.approx(options[node], abs=1e-6)
        chosen |= set(model.expand(node))
    # the curve is the ordinary one of that order, and never below the sensitivity order's at any k
    again = partial_quantization(ctx, list(got.nodes), data_num=2)
    assert got.partial == pytest.approx(again.partial, abs=1e-12) and got.single == again.single
    static = partial_quantization(ctx, nodes, data_num=2)
    assert got.partial[0] >= static.partial[0] - 1e-12
    assert PartialQuantizationResult.from_dict(json.loads(json.dumps(got.to_dict()))) == got


def test_greedy_int16_is_the_int16_curve_of_its_order(cnn_dir: Path) -> None:
    ctx = open_context(cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data")
    nodes = list(ctx.model.sensitivity_nodes[:4])
    got = partial_quantization(ctx, nodes, data_num=2, qtype="int16", order="greedy")
    again = partial_quantization(ctx, list(got.nodes), data_num=2, qtype="int16")
    assert got.partial == pytest.approx(again.partial, abs=1e-12) and (got.qtype, got.order) == ("int16", "greedy")


def test_cli_greedy_and_a_bad_order(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    nodes = dbg.load_model(path).sensitivity_nodes[:3]
    assert main(["sensitivity-analysis", str(path), str(cnn_dir / "calibration_data"), "-sn", f"[{','.join(nodes)}]",
                 "-sd", str(tmp_path), "--order", "greedy"]) == 0
    assert "partial quantization, greedy order" in capsys.readouterr().out
    assert json.loads((tmp_path / "partial_quantization.json").read_text())["order"] == "greedy"
    with pytest.raises(dbg.OptionError, match="order 'best' is not supported; expected one of sensitivity, greedy"):
        dbg.sensitivity_analysis(path, cnn_dir / "calibration_data", sensitive_nodes=nodes, save_dir=tmp_path, order="best")
