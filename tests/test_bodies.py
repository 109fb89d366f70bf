"""Calibration nodes inside If / Loop / Scan bodies: read, switched and scored like any other.

Every score is checked against the brute force that edits the file itself (each QDQ pair not
enabled is cut out, in whichever body it sits) and runs one session per candidate.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.errors import OptionError
from ptqdebug.model import load_model
from tests.support.bodies import add_qdq, if_model, loop_model, scan_model
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, cosine, oracle_from_file


def _samples(shape: tuple[int, ...], n: int = 3, signs: bool = False) -> list[dict[str, np.ndarray]]:
    """``signs``: alternate the sign of the samples, so an If on the mean takes both branches."""
    return [{"x": (np.random.default_rng(i).standard_normal(shape) * (-1 if signs and i % 2 == 0 else 1)).astype(np.float32)}
            for i in range(n)]


CASES = {
    "if": (if_model, (2, 3, 8, 8), True),
    "loop": (loop_model, (1, 8), False),
    "scan": (scan_model, (5, 1, 6), False),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict[str, np.ndarray]]]]:
    d = tmp_path_factory.mktemp("bodies")
    out = {}
    for name, (make, shape, signs) in CASES.items():
        qdq = add_qdq(make())
        onnx.checker.check_model(qdq, full_check=True)
        onnx.save(qdq, d / f"{name}.onnx")
        out[name] = (d / f"{name}.onnx", _samples(shape, signs=signs))
    return out


@pytest.mark.parametrize("node_type", ["weight", "activation", "node"])
@pytest.mark.parametrize("name", list(CASES))
def test_sensitivity_matches_brute_force(models, name: str, node_type: str) -> None:
    path, samples = models[name]
    cm = load_model(path)
    got = dbg.get_sensitivity_of_nodes(cm, ["cosine-similarity", "mse"], samples, node_type=node_type, data_num=3, cache=False)
    cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
    run = lambda qs, s: oracle_from_file(path, qs, s)  # noqa: E731
    want = brute_force_sensitivity(run, cands, samples, list(cm.outputs), cosine)
    assert set(got) == set(want)
    for n, v in want.items():
        assert abs(got[n]["cosine-similarity"] - v) < 1e-6, n
    assert_same_ranking([(n, v["cosine-similarity"]) for n, v in got.items()], want, True)
    mse = brute_force_sensitivity(run, cands, samples, list(cm.outputs), lambda a, b: float(np.mean((a - b) ** 2)))
    for n, v in mse.items():
        assert got[n]["mse"] == pytest.approx(v, rel=1e-5, abs=1e-9), n


@pytest.mark.parametrize("name", list(CASES))
def test_local_errors_of_body_holders_match_brute_force(models, name: str) -> None:
    """A node holding a body: its calibration nodes (the body's among them) on, compared at its outputs."""
    path, samples = models[name]
    result = dbg.local_errors(path, samples, data_num=3)
    cm = load_model(path)
    assert {e.node for e in result.entries} == set(cm.sensitivity_nodes)
    for e in result.entries:
        outs = list(e.outputs)
        vals = []
        for s in samples:
            ref, got = oracle_from_file(path, (), s, outputs=outs), oracle_from_file(path, cm.node_quantizers[e.node], s, outputs=outs)
            vals += [cosine(ref[t], got[t]) for t in outs if ref[t].dtype.kind == "f"]
        assert abs(e.scores["cosine-similarity"] - np.mean(vals)) < 1e-6, e.node


@pytest.mark.parametrize("name", list(CASES))
def test_shared_initializers_reach_bodies(models, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights read inside a body (as outer values) can come from the shared copy too."""
    from ptqdebug.engine.engine import Engine

    path, samples = models[name]
    monkeypatch.setattr(Engine, "SHARE_BYTES", 2**62)
    embedded = dbg.get_sensitivity_of_nodes(load_model(path), "cosine-similarity", samples, node_type="node", cache=False)
    monkeypatch.setattr(Engine, "SHARE_BYTES", 0)
    ctx = dbg.open_context(path, samples, cache=False)
    assert dbg.get_sensitivity_of_nodes(ctx, "cosine-similarity", node_type="node") == embedded
    assert ctx.engine._shared


def test_body_calibration_nodes_have_a_scope_and_their_holder_stands_for_them(models) -> None:
    cm = load_model(models["if"][0])
    scoped = {q.name: q.scope for q in cm.quantizers if q.scope is not None}
    assert scoped == {f"{b}_conv_in{i}_QuantizeLinear": "if_sign" for b in ("then", "else") for i in (0, 1)}
    assert set(cm.held_quantizers["if_sign"]) == set(scoped)
    assert set(cm.node_quantizers["if_sign"]) == set(scoped)  # "node" if_sign = every calibration node of its branches
    assert "if_sign" in cm.sensitivity_nodes
    # the body weights moved to the main graph under names of their own; the bodies read them there
    w = cm.quantizer_map["then_conv_in1_QuantizeLinear"]
    assert w.kind == "weight" and w.input == "then_conv_in1_QuantizeLinear::w_then"
    assert w.input in {t.name for t in cm.proto.graph.initializer}
    order = [q.name for q in cm.quantizers]
    assert order.index("conv_in_in0_QuantizeLinear") < order.index("then_conv_in0_QuantizeLinear") < order.index("conv_out_in0_QuantizeLinear")


def test_all_on_is_the_file_and_all_off_the_float_model(models) -> None:
    import onnxruntime as ort

    for name, (make, _, _) in CASES.items():
        path, samples = models[name]
        ctx = dbg.open_context(path, samples, cache=False)
        ref = ctx.reference(0, ctx.model.outputs)
        float_out = ort.InferenceSession(make().SerializeToString(), providers=["CPUExecutionProvider"]).run(None, samples[0])
        qdq_out = oracle_from_file(path, [q.name for q in ctx.model.quantizers], samples[0])
        on = ctx.engine.run(ref, ctx.model.calibrated_configuration)
        for o, f in zip(ctx.model.outputs, float_out):
            np.testing.assert_allclose(ref[o], f, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(on[o], qdq_out[o], rtol=1e-6, atol=1e-6)


def test_distributions_of_body_calibration_nodes(models, tmp_path: Path) -> None:
    path, samples = models["if"]
    cm = load_model(path)
    # a body weight: float vs fake-quantized values of the body's own constant
    files = dbg.plot_distribution(path, samples, ["then_conv_in1_QuantizeLinear", "then_conv_in0_QuantizeLinear"],
                                  save_dir=str(tmp_path / "d"))
    assert len(files) == 2
    # inside the Loop body the MatMul reads the loop state: no main-graph value to show
    loop_path, loop_samples = models["loop"]
    with pytest.raises(OptionError, match="inside a body of node 'loop'"):
        dbg.plot_distribution(loop_path, loop_samples, ["loop_matmul_in0_QuantizeLinear"], save_dir=str(tmp_path / "l"))
    with pytest.raises(OptionError, match="inside a body"):
        dbg.get_channelwise_data_distribution(loop_path, loop_samples, ["loop_matmul_in0_QuantizeLinear"],
                                              save_dir=str(tmp_path / "l"))
    # the holder stands for what can be shown: the body weight's boxes only
    boxes = dbg.get_channelwise_data_distribution(loop_path, loop_samples, ["loop"], save_dir=str(tmp_path / "b"))
    assert len(boxes) == 1
    assert cm.data_visible("then_conv_in0_QuantizeLinear")  # reads the main graph's `h`


def test_stats_of_body_calibration_nodes(models, tmp_path: Path) -> None:
    path, samples = models["loop"]
    dbg.get_calibration_nodes_stat_info(path, samples, save_dir=str(tmp_path))
    stats = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert stats["loop_matmul_in0_QuantizeLinear"]["Max_vals"] == []  # no data inside the body
    w = np.abs(onnx.numpy_helper.to_array(_body_weight(loop_model(), "w_loop")))
    assert stats["loop_matmul_in1_QuantizeLinear"]["Max_vals"] == pytest.approx(list(w.max(axis=1)))


def _body_weight(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    return next(t for t in loop.attribute[0].g.initializer if t.name == name)


@pytest.mark.parametrize("name", list(CASES))
def test_runall_on_control_flow(models, tmp_path: Path, name: str) -> None:
    path, samples = models[name]
    run = dbg.runall(str(path), samples, str(tmp_path / "out"), cache=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sum(results["model"]["calibration_nodes"].values()) == len(load_model(path).quantizers)
    assert any(p.name == "index.html" for p in run.files)


def test_output_node_inside_a_body_is_refused(models) -> None:
    path, samples = models["loop"]
    with pytest.raises(OptionError, match="inside a body of node 'loop'"):
        dbg.get_sensitivity_of_nodes(path, "cosine-similarity", samples, output_node="loop_matmul_in0_QuantizeLinear")


def test_repeated_names_in_sibling_branches_are_made_unique(tmp_path: Path) -> None:
    model = add_qdq(if_model())
    if_node = next(n for n in model.graph.node if n.op_type == "If")
    for attr in if_node.attribute:  # both branches' pairs named alike, as one exporter might
        for n in attr.g.node:
            n.name = n.name.replace("then_conv", "conv").replace("else_conv", "conv")
    onnx.save(model, tmp_path / "m.onnx")
    names = [q.name for q in load_model(tmp_path / "m.onnx").quantizers if q.scope]
    assert len(set(names)) == 4
    assert "if_sign.then_branch/conv_in0_QuantizeLinear" in names or "if_sign.else_branch/conv_in0_QuantizeLinear" in names


def test_unnamed_body_nodes_get_names(tmp_path: Path) -> None:
    model = add_qdq(loop_model())
    for n in next(n for n in model.graph.node if n.op_type == "Loop").attribute[0].g.node:
        n.name = ""
    onnx.save(model, tmp_path / "m.onnx")
    cm = load_model(tmp_path / "m.onnx")
    assert {q.name for q in cm.quantizers if q.scope} == {"loop.body/QuantizeLinear_0", "loop.body/QuantizeLinear_2"}


def test_hzcalibration_inside_bodies_scores_as_its_qdq_twin(tmp_path: Path) -> None:
    """The original toolchain's HzCalibration nodes inside a Loop and an If: the same scores as the
    QDQ pairs they stand for (checked against the brute force above)."""
    from tests.support.horizon import hz_twin

    for make, shape, signs in (CASES["loop"], CASES["if"]):
        qdq = add_qdq(make(), symmetric=True)
        hz, names = hz_twin(qdq)  # QuantizeLinear name → HzCalibration name
        onnx.save(qdq, tmp_path / "qdq.onnx")
        onnx.save(hz, tmp_path / "hz.onnx")
        samples = _samples(shape, signs=signs)
        cm = load_model(tmp_path / "hz.onnx")
        assert cm.source_format == "horizon" and any(q.scope for q in cm.quantizers)
        for node_type in ("weight", "activation"):
            got = dbg.get_sensitivity_of_nodes(cm, "cosine-similarity", samples, node_type=node_type, data_num=3, cache=False)
            twin = dbg.get_sensitivity_of_nodes(tmp_path / "qdq.onnx", "cosine-similarity", samples, node_type=node_type,
                                                data_num=3, cache=False)
            # (both branches quantize `h`: two nodes named h_HzCalibration, one renamed by its branch)
            assert {names[q] for q in twin} == {q.split("/")[-1] for q in got}
            assert sorted(v["cosine-similarity"] for v in twin.values()) == pytest.approx(
                sorted(v["cosine-similarity"] for v in got.values()), abs=1e-7)


@pytest.mark.slow
def test_silero_vad_branches_match_brute_force(tmp_path: Path) -> None:
    """The real silero-vad model (its whole network in the two branches of an If on the sample
    rate), with QDQ pairs on every Conv of both branches: scores equal the brute force's."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("silero-vad==6.2.3 is not installed (make test installs it: pip install --no-deps silero-vad==6.2.3)")
    src = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"
    path = tmp_path / "silero_qdq.onnx"
    onnx.save(add_qdq(onnx.load(str(src)), activation_scale=0.05), path)
    noise = np.random.default_rng(0)

    def tone(f: float, sr: int) -> dict[str, np.ndarray]:  # one 32 ms window (512 or 256 samples) at rate sr
        t = np.arange(sr // 31.25) / sr
        x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * noise.standard_normal(t.size)
        return {"input": x[None].astype(np.float32), "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(sr, np.int64)}

    samples = [tone(220, 16000), tone(330, 8000)]  # one sample through each branch
    cm = load_model(path)
    assert len(cm.quantizers) == 24 and {q.scope for q in cm.quantizers} == {"If_0"}
    for node_type in ("weight", "activation"):
        got = dbg.get_sensitivity_of_nodes(cm, "cosine-similarity", samples, node_type=node_type, data_num=2, cache=False)
        cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
        want = brute_force_sensitivity(lambda qs, s: oracle_from_file(path, qs, s), cands, samples, list(cm.outputs), cosine)
        for n, v in want.items():
            assert abs(got[n]["cosine-similarity"] - v) < 1e-6, n
        assert min(want.values()) < 0.9999  # the branches' calibration nodes do change the output


def test_cli_on_a_loop_model(models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptqdebug.cli import main

    path, samples = models["loop"]
    data = tmp_path / "data" / "x"
    data.mkdir(parents=True)
    for i, s in enumerate(samples):
        np.save(data / f"{i}.npy", s["x"])
    assert main(["info", str(path)]) == 0
    assert "loop_matmul_in1_QuantizeLinear  int8 per-tensor -> (inside loop)" in capsys.readouterr().out
    assert main(["plot-distribution", str(path), str(tmp_path / "data"), "-n", "['loop_matmul_in0_QuantizeLinear']",
                 "-s", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside a body of node 'loop'" in err[0] and not (tmp_path / "out").exists()
