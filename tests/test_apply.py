"""From runall's recommendation to the model that applies it: ``Verdict.keep_float`` →
``calibrate(float_nodes=...)`` or ``export_model``, whose output cosine is the score runall
predicted for it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.partial import partial_quantization, prune
from ptqdebug.analyses.verdict import Recommendation, Verdict
from ptqdebug.calibration import calibrate
from ptqdebug.cli import main
from ptqdebug.metrics import METRICS, compare
from tests.calibration.models import make_samples, tiny_cnn


def test_keep_float_is_the_best_prefix_and_empty_when_nothing_helps() -> None:
    recs = tuple(Recommendation(n, (f"{n}_q",), after, 0.0) for n, after in (("a", 0.990), ("b", 0.995), ("c", 0.993)))
    v = Verdict("cosine-similarity", "activation", {"calibrated": 0.98}, "", recs)
    assert v.keep_float == ("a", "b") and v.to_dict()["keep_float"] == ["a", "b"]
    assert Verdict("cosine-similarity", "activation", {"calibrated": 0.999}, "", recs).keep_float == ()
    assert Verdict("cosine-similarity", "none", {"calibrated": 0.98}, "", ()).keep_float == ()
    assert v.keep_int16 == ()  # int16 not scored
    recs16 = tuple(Recommendation(r.node, r.calibration_nodes, r.score_after, r.recovery, after16)
                   for r, after16 in zip(recs, (0.985, 0.982, 0.997)))
    v16 = Verdict("cosine-similarity", "activation", {"calibrated": 0.98}, "", recs16)
    assert v16.keep_int16 == ("a", "b", "c") and v16.keep_float == ("a", "b")
    assert Verdict.from_dict(json.loads(json.dumps(v16.to_dict()))).recommendations == recs16


def test_the_recommended_model_scores_what_runall_predicted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    samples = make_samples(4)
    full = calibrate(tmp_path / "float.onnx", samples, tmp_path / "cal", method="max")
    assert main(["runall", full.model_path, full.data_dir, "-s", str(tmp_path / "debug"), "-dn", "all", "-nt", "node",
                 "-pt", "0.99996"]) == 0
    out = capsys.readouterr().out
    run = dbg.runall(full.model_path, full.data_dir, tmp_path / "again", node_type="node", data_num=None,
                     pick_threshold=0.99996, report=False)
    keep = run.verdict.keep_float
    assert keep, "the premise: runall recommends something on this model"
    # the output's calibration node, which no node owns, is a candidate of its own (and the most
    # sensitive one here); calibrate and export both take its name
    assert "y_QuantizeLinear" in keep and "y_QuantizeLinear" in dbg.load_model(full.model_path).unowned_quantizers
    # each recommendation's score with the activations in int16 instead: sensitivity_analysis(qtype="int16")'s
    ctx = dbg.open_context(full.model_path, full.data_dir)
    wider = partial_quantization(ctx, run.partial.nodes, data_num=None, qtype="int16")
    assert [r.score_int16 for r in run.verdict.recommendations] == pytest.approx(list(wider.partial), abs=1e-12)
    assert run.partial_int16 is not None and run.partial_int16.partial == pytest.approx(wider.partial, abs=1e-12)
    assert run.verdict.keep_int16 == prune(ctx, wider, None)[0]
    assert wider.best_prefix(), "the premise: int16 recovers something here too"
    assert f"--int16-nodes '[{','.join(run.verdict.keep_int16)}]'" in out

    assert f"ptqdebug export {full.model_path} -o partial.onnx --float-nodes '[{','.join(keep)}]'" in out
    # and how to check what export writes, as deployed and on held-out samples (a trial's int16 fix deployed worse)
    assert ("then check the written model as ONNX Runtime deploys it, on these samples and on held-out ones: "
            f"ptqdebug check-deployment partial.onnx {full.data_dir} (and the same for partial_int16.onnx)") in out
    page = (tmp_path / "debug" / "index.html").read_text()  # the report's commands too, with the real paths
    assert f"ptqdebug check-deployment partial.onnx {full.data_dir} (and the same for partial_int16.onnx)" in page
    assert f"ptqdebug export {full.model_path} -o partial_int16.onnx --int16-nodes" in page
    kept, predicted = run.verdict.kept["float32"]
    assert kept == keep and set(keep) <= set(run.partial.best_prefix())
    applied = calibrate(tmp_path / "float.onnx", samples, tmp_path / "applied", method="max", float_nodes=list(keep))
    assert applied.cosine == pytest.approx(predicted, abs=1e-6)
    assert applied.cosine > full.cosine
    # the same from the calibrated model itself, without re-calibrating
    exported = dbg.export_model(full.model_path, tmp_path / "partial.onnx", list(keep)).path
    float_run = ort.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    partial = ort.InferenceSession(str(exported), so, providers=["CPUExecutionProvider"])
    cos = METRICS["cosine-similarity"]
    got = np.mean([compare([cos], float_run.run(["y"], s)[0], partial.run(["y"], s)[0])[0] for s in samples])
    assert got == pytest.approx(predicted, abs=1e-6)


def test_horizon_models_are_told_to_use_run_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export and calibrate write QDQ models; the original toolchain keeps nodes in float itself."""
    from tests.support.horizon import hz_twin

    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    full = calibrate(tmp_path / "float.onnx", make_samples(4), tmp_path / "cal", method="max")
    hz, _ = hz_twin(onnx.load(full.model_path))
    onnx.save(hz, tmp_path / "hz.onnx")
    assert main(["runall", str(tmp_path / "hz.onnx"), full.data_dir, "-s", str(tmp_path / "debug"), "-dn", "all",
                 "-nt", "node", "-pt", "0.99996"]) == 0
    out = capsys.readouterr().out
    assert "list them in the original toolchain's run_on_cpu: " in out and "ptqdebug export" not in out
    for qtype, told in (("float32", "list them in the original toolchain's run_on_cpu: "),
                        ("int16", "give them InputType: int16 in the original toolchain's node_info: ")):
        assert main(["sensitivity-analysis", str(tmp_path / "hz.onnx"), full.data_dir, "-p", "0.99999", "-d", "all",
                     "-qt", qtype, "-sd", str(tmp_path / f"sa_{qtype}")]) == 0
        out = capsys.readouterr().out
        assert told in out and "ptqdebug export" not in out, out


def test_the_summary_says_what_int16_gets() -> None:
    from ptqdebug.analyses.verdict import _summary

    def recs(*pairs: tuple[float, float]) -> list[Recommendation]:
        return [Recommendation(n, (n,), after, 0.01, after16) for n, (after, after16) in zip("abc", pairs)]

    same = _summary("activation", 0.98, 0.999, 0.981, recs((0.99, 0.985), (0.995, 0.993)))
    assert same.endswith("With their activations in int16 instead of float, the same nodes bring it to 0.993000.")
    other = _summary("activation", 0.98, 0.999, 0.981, recs((0.99, 0.989), (0.995, 0.985)))
    assert other.endswith("With their activations in int16 instead of float, another selection, a, brings it to 0.989000.")
    none = _summary("activation", 0.98, 0.999, 0.981, recs((0.99, 0.98), (0.995, 0.979)))
    assert none.endswith("Their activations in int16 instead of float recover nothing.")
    unscored = _summary("activation", 0.98, 0.999, 0.981, recs((0.99, math.nan), (0.995, math.nan)))
    assert "int16" not in unscored


def test_best_prefix_follows_the_metric_direction() -> None:
    from ptqdebug.analyses.partial import best_prefix

    assert best_prefix("abc", [0.990, 0.995, 0.993], 0.98) == ("a", "b")  # cosine: higher is better
    assert best_prefix("abc", [0.5, 0.2, 0.3], 0.9, "mse") == ("a", "b")  # mse: lower is better
    assert best_prefix("abc", [0.95, 0.97, 0.96], 0.9, "mse") == ()  # nothing beats the baseline
    assert best_prefix("ab", [math.nan, 0.99], 0.98) == ("a", "b")  # NaN is never the best


@pytest.mark.parametrize("name", ["pc_int8_pairs_keep", "pt_uint8_pairs_keep"])
def test_pruning_drops_only_nodes_that_add_nothing(cnn_dir: Path, samples: list, name: str) -> None:
    """prune against a brute force (the file with those pairs cut, a session per configuration):
    its score is the kept nodes' score, no worse than the best prefix's; each dropped node had
    recovered nothing; leaving out one more of the kept nodes that recovered nothing is worse."""
    from tests.support.oracle import oracle_from_file

    path = cnn_dir / f"{name}.onnx"
    ctx = dbg.open_context(path, cnn_dir / "calibration_data", cache=False)
    model = ctx.model
    result = partial_quantization(ctx, list(model.sensitivity_nodes), data_num=2)  # graph order: some add nothing
    keep, score = prune(ctx, result, 2)
    prefix = result.best_prefix()
    cos = METRICS["cosine-similarity"]

    def brute(nodes: tuple[str, ...]) -> float:
        on = model.calibrated_configuration - set(model.expand(list(nodes)))
        return float(np.mean([compare([cos], oracle_from_file(path, set(), s)["logits"], oracle_from_file(path, on, s)["logits"])[0]
                              for s in samples[:2]]))

    gains = dict(zip(result.nodes, result.recovery()))
    dropped = [n for n in prefix if n not in keep]
    assert dropped, "the premise: this order has nodes that add nothing"
    assert set(keep) < set(prefix) and all(gains[n] <= 0 for n in dropped)
    assert score == pytest.approx(brute(keep), abs=1e-6) and score >= result.partial[len(prefix) - 1] - 1e-12
    for n in keep:
        if gains[n] <= 0 and len(keep) > 1:
            assert brute(tuple(k for k in keep if k != n)) < score + 1e-6


def test_cli_offers_int16_alone_when_float_recovers_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from ptqdebug.cli.commands import _print_how_to_apply

    recs = (Recommendation("a", ("qa",), 0.988, -0.002, 0.995),)
    v = Verdict("cosine-similarity", "activation", {"calibrated": 0.99}, "", recs)
    assert v.keep_float == () and v.keep_int16 == ("a",)
    model = lambda fmt: SimpleNamespace(source_format=fmt, float_source=None, auto_named=frozenset(), not_in_float=frozenset())  # noqa: E731
    _print_how_to_apply(v, model("qdq"), "m.onnx", "my data")
    assert capsys.readouterr().out == ("to keep the recommended nodes' activations in int16: "
                                       "ptqdebug export m.onnx -o partial_int16.onnx --int16-nodes '[a]'\n"
                                       "then check the written model as ONNX Runtime deploys it, on these samples and on "
                                       "held-out ones: ptqdebug check-deployment partial_int16.onnx 'my data'\n")
    _print_how_to_apply(v, model("horizon"), "m.onnx", "d")
    assert capsys.readouterr().out == ("to keep the recommended nodes' activations in int16: give them InputType: int16 "
                                       "in the original toolchain's node_info: a\n")
