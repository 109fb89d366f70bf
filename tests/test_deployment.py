"""The deployment check against a brute force: ONNX Runtime's default session over the file (the
deployed model), the file with QDQ fusion off and every calibration node on (the simulation), and
with every calibration node cut out (float), compared per sample with the metrics by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T

import ptqdebug as dbg
from ptqdebug.analyses.deployment import DeploymentCheck
from ptqdebug.cli import main
from ptqdebug.errors import ModelError
from ptqdebug.metrics import compare, get_metrics
from tests.support.horizon import hz_twin
from tests.support.oracle import oracle_from_file, oracle_providers
from tests.test_float8 import fp8_model

METRICS = ["cosine-similarity", "mse"]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's fusions depend on the execution provider: these tests pin its CPU defaults,
    also when the suite runs with ``PTQDEBUG_PROVIDERS=cuda``."""
    monkeypatch.setenv("PTQDEBUG_PROVIDERS", "cpu")


def brute_force(path: Path, samples: list[dict[str, np.ndarray]], float_path: Path | None = None) -> dict[str, np.ndarray]:
    """``{"deployed"|"simulated"|"between": [metric] means over samples}`` at the first output;
    float is ``float_path`` run as is, or else the file with its QDQ pairs cut out."""
    quantizers = [q.name for q in dbg.load_model(path).quantizers]
    deployed = ort.InferenceSession(str(path), providers=oracle_providers())
    plain = ort.InferenceSession(str(float_path), providers=oracle_providers()) if float_path else None
    out = deployed.get_outputs()[0].name
    chosen = get_metrics(METRICS)
    rows = {"deployed": [], "simulated": [], "between": []}
    for s in samples:
        dep = deployed.run([out], s)[0]
        sim = oracle_from_file(path, quantizers, s, [out])[out]
        flt = plain.run([out], s)[0] if plain else oracle_from_file(path, [], s, [out])[out]
        rows["deployed"].append(compare(chosen, flt, dep))
        rows["simulated"].append(compare(chosen, flt, sim))
        rows["between"].append(compare(chosen, sim, dep))
    return {k: np.mean(np.array(v, dtype=np.float64), axis=0) for k, v in rows.items()}


def _skip_unless_deployable(got: DeploymentCheck) -> None:
    """ONNX Runtime before 1.32 fuses some float8 QDQ MatMuls into nodes it cannot run (QLinearMatMul;
    1.20 also MatMulIntegerToFloat): the deployed session fails to load, and the check says so
    instead of scoring it."""
    if got.failure is not None and "tensor(float8" in got.failure:
        assert got.outputs == () and "ONNX Runtime cannot run this model as deployed" in got.summary()
        pytest.skip(f"ONNX Runtime {ort.__version__} cannot load its own float8 fusion: {got.failure[:160]}")


def _assert_matches(got: DeploymentCheck, want: dict[str, np.ndarray]) -> None:
    (out,) = got.outputs
    for key, values in want.items():
        scores = getattr(out, key)
        assert scores["cosine-similarity"] == pytest.approx(values[0], abs=1e-6)
        # float references differ by float rounding (the engine's segments against one session:
        # 1e-5 relative on these logits), which moves an mse of a 1e-2 error by up to ~1e-3
        assert scores["mse"] == pytest.approx(values[1], rel=5e-3, abs=1e-12)


@pytest.mark.parametrize("name", ["pc_int8_pairs", "pt_uint8_pairs_keep", "pc_int16_keep_sym"])
def test_deployment_check_matches_brute_force(cnn_dir: Path, samples: list[dict[str, np.ndarray]], name: str) -> None:
    """(pc_int8_pairs: ONNX Runtime's quantizer deleted the Relus, so float is the float model.)"""
    path = cnn_dir / f"{name}.onnx"
    got = dbg.check_deployment(path, cnn_dir / "calibration_data", METRICS, data_num=3)
    want = brute_force(path, samples[:3], cnn_dir / "float.onnx")
    _assert_matches(got, want)
    assert got.samples == 3 and got.metrics == tuple(METRICS) and got.relu_fused == ()
    # agreement: the deployed model is at least as close to the simulation as the simulation is to float
    assert got.agrees == bool(want["between"][0] >= want["simulated"][0])
    assert got.agrees, "ONNX Runtime's integer kernels should agree with the simulation on this CNN"
    assert "agrees with ptqdebug's simulation" in got.summary()
    # the same from a ModelProto (the deployed session is built from its bytes)
    again = dbg.check_deployment(onnx.load(path), cnn_dir / "calibration_data", METRICS, data_num=3)
    assert again.to_dict() == got.to_dict()
    assert DeploymentCheck.from_dict(json.loads(json.dumps(got.to_dict()))).to_dict() == got.to_dict()


def test_a_relu_onnxruntime_removes_is_found_and_named(tmp_path: Path) -> None:
    """Float8 after a Relu: ONNX Runtime's default optimizations delete the Relu, so the deployed
    model computes something else than the model means (the simulation keeps the Relu)."""
    path, samples = fp8_model(tmp_path, T.FLOAT8E4M3FN, T.FLOAT8E4M3FN)
    got = dbg.check_deployment(path, tmp_path / "data", METRICS)
    assert not got.agrees and got.relu_fused == ("r_q",)
    _skip_unless_deployable(got)
    want = brute_force(path, samples)  # the brute force's own float8 graph keeps its Relu too
    _assert_matches(got, want)
    assert want["between"][0] < 0.9 < want["simulated"][0]  # the premise: a real disagreement
    text = got.summary()
    assert "differs from ptqdebug's simulation" in text and "removes the Relu before 1 calibration node that keeps" in text


def test_cli_check_deployment(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check-deployment", str(cnn_dir / "pc_int8_pairs_keep.onnx"), str(cnn_dir / "calibration_data"),
               "-m", "['cosine-similarity','sqnr']", "-d", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "logits deployed " in out and "logits deployed vs simulated " in out and "sqnr" in out
    assert out.rstrip().splitlines()[-1].startswith("ONNX Runtime as deployed (default optimizations, CPUExecutionProvider)")


def test_horizon_models_are_refused_in_one_line(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = hz_twin(onnx.load(cnn_dir / "pc_int8_keep_sym.onnx"))
    onnx.save(model, tmp_path / "hz.onnx")
    with pytest.raises(ModelError, match="HzCalibration"):
        dbg.check_deployment(tmp_path / "hz.onnx", cnn_dir / "calibration_data")
    rc = main(["runall", str(tmp_path / "hz.onnx"), str(cnn_dir / "calibration_data"), "-s", str(tmp_path / "out"),
               "--check-deployment"])
    err = capsys.readouterr().err
    assert rc == 2 and "expected a QDQ model for the deployment check" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was computed or written


def test_runall_with_check_deployment(cnn_dir: Path, tmp_path: Path) -> None:
    data = cnn_dir / "calibration_data"
    path = cnn_dir / "pc_int8_pairs_keep.onnx"
    run = dbg.runall(path, data, tmp_path / "with", check_deployment=True)
    assert run.deployment is not None and run.deployment.agrees
    assert run.deployment.to_dict() == dbg.check_deployment(path, data, "cosine-similarity", data_num=1).to_dict()
    saved = json.loads((tmp_path / "with" / "results.json").read_text())
    assert DeploymentCheck.from_dict(saved["deployment"]).to_dict() == run.deployment.to_dict()
    page = (tmp_path / "with" / "index.html").read_text()
    assert '<div class="deploy ok"><strong>Deployment check</strong> ONNX Runtime as deployed' in page
    plain = dbg.runall(path, data, tmp_path / "without", report=False)
    assert plain.deployment is None and json.loads((tmp_path / "without" / "results.json").read_text())["deployment"] is None
    with pytest.raises(dbg.OptionError, match="check_deployment is 'yes'"):
        dbg.runall(path, data, tmp_path / "bad", check_deployment="yes")  # type: ignore[arg-type]


def test_a_model_read_from_memory_has_no_file_to_deploy(cnn_dir: Path) -> None:
    loaded = dbg.load_model(onnx.load(cnn_dir / "pc_int8_pairs.onnx"))  # a CalibratedModel: no path, no ModelProto kept
    with pytest.raises(dbg.OptionError, match="expected a path or an onnx.ModelProto"):
        dbg.check_deployment(loaded, cnn_dir / "calibration_data")
    assert dbg.check_deployment(dbg.load_model(cnn_dir / "pc_int8_pairs.onnx"), cnn_dir / "calibration_data").agrees


def test_a_model_onnxruntime_cannot_deploy_is_a_finding_not_a_crash(cnn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A fused kernel ONNX Runtime lacks (its QDQ fusions on) does not stop runall, whose analyses
    turn the fusions off: the check reports it."""
    import ptqdebug.analyses.deployment as deployment
    from ptqdebug.engine.runtime import SessionError

    def refuse(*args: object) -> None:
        raise SessionError("Could not find an implementation for ConvInteger(10) node with name 'conv'")

    monkeypatch.setattr(deployment, "deployed_session", refuse)
    path, data = cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data"
    got = dbg.check_deployment(path, data)
    assert got.failure == "Could not find an implementation for ConvInteger(10) node with name 'conv'"
    assert not got.agrees and got.outputs == ()
    assert got.summary().startswith("ONNX Runtime cannot run this model as deployed (default optimizations, CPUExecutionProvider): "
                                    "Could not find an implementation for ConvInteger(10)")
    assert DeploymentCheck.from_dict(json.loads(json.dumps(got.to_dict()))).to_dict() == got.to_dict()
    run = dbg.runall(path, data, tmp_path / "out", check_deployment=True)
    assert run.deployment is not None and run.deployment.failure == got.failure and run.deployment.samples == 1  # runall: data_num=1
    assert '<div class="deploy bad">' in (tmp_path / "out" / "index.html").read_text()
    capsys.readouterr()
    assert main(["check-deployment", str(path), str(data)]) == 0
    assert capsys.readouterr().out.startswith("ONNX Runtime cannot run this model as deployed")


def _chain(folder: Path, bad: int, layers: int = 6) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """x → (int8 Q/DQ → MatMul(int8 Q/DQ weight) → Relu) × layers, the activation after the Relu of
    layer ``bad`` quantized to float8 (which ONNX Runtime's optimizations break: they delete that Relu)."""
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(3)
    nodes, inits, src = [], [], "x"
    for i in range(layers):
        fp8 = i == bad
        zero_type, qmax = (T.FLOAT8E4M3FN, 448.0) if fp8 else (T.INT8, 127.0)
        w = (rng.standard_normal((16, 16)) * 0.4).astype(np.float32)
        inits += [nh.from_array(w, f"w{i}"), nh.from_array(np.array(np.abs(w).max() / 127, np.float32), f"w{i}_s"),
                  h.make_tensor(f"w{i}_z", T.INT8, [], [0]),
                  nh.from_array(np.array(4.0 / qmax, np.float32), f"a{i}_s"), h.make_tensor(f"a{i}_z", zero_type, [], [0])]
        nodes += [h.make_node("QuantizeLinear", [src, f"a{i}_s", f"a{i}_z"], [f"a{i}_q"], name=f"a{i}_q"),
                  h.make_node("DequantizeLinear", [f"a{i}_q", f"a{i}_s", f"a{i}_z"], [f"a{i}_dq"], name=f"a{i}_dq"),
                  h.make_node("QuantizeLinear", [f"w{i}", f"w{i}_s", f"w{i}_z"], [f"w{i}_q"], name=f"w{i}_q"),
                  h.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_s", f"w{i}_z"], [f"w{i}_dq"], name=f"w{i}_dq"),
                  h.make_node("MatMul", [f"a{i}_dq", f"w{i}_dq"], [f"m{i}"], name=f"mm{i}"),
                  h.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        src = f"r{i}"
    graph = h.make_graph(nodes, "chain", [h.make_tensor_value_info("x", T.FLOAT, [1, 16])],
                         [h.make_tensor_value_info(src, T.FLOAT, [1, 16])], inits)
    path = folder / "chain.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 19)], ir_version=9), path)
    return path, [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(3)]


def test_the_first_calibration_node_where_deployment_departs_is_found(tmp_path: Path) -> None:
    """Six layers; layer 3's activation calibration node reads layer 2's Relu in float8: ONNX Runtime
    deletes that Relu, so deployment departs from the simulation there and not before."""
    path, samples = _chain(tmp_path, bad=3)
    got = dbg.check_deployment(path, samples)
    assert not got.agrees and got.relu_fused == ("a3_q",)
    _skip_unless_deployable(got)
    assert got.departure is not None and got.departure[0] == "a3_q"
    assert "the two first part at a3_q" in got.summary()
    assert DeploymentCheck.from_dict(json.loads(json.dumps(got.to_dict()))).to_dict() == got.to_dict()
    # a brute force of the search's premise: with the nodes before a3_q on, deployed and simulated agree
    model = dbg.load_model(path)
    order = [q.name for q in model.quantizers]
    before = order[:order.index("a3_q")]
    so = ort.SessionOptions()  # the model as ONNX defines it: basic optimizations keep the Relu
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    for on, agree in ((before, True), ([*before, "a3_q"], False)):
        exported = dbg.export_model(path, tmp_path / "prefix.onnx", [q for q in order if q not in on]).path
        simulated = ort.InferenceSession(str(exported), so, providers=["CPUExecutionProvider"]).run(None, samples[0])[0]
        deployed = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).run(None, samples[0])[0]
        assert (compare(get_metrics("cosine-similarity"), simulated, deployed)[0] > 0.999) == agree


def test_a_disagreement_with_an_error_of_the_same_size_is_told_apart() -> None:
    """Deployed and simulated both lose about 0.0045 against float, yet differ from each other
    as much (the rapidocr classifier): the loss holds; single scores may not carry over."""
    from ptqdebug.analyses.deployment import OutputAgreement

    def check(deployed: float, simulated: float, between: float, metric: str = "cosine-similarity") -> str:
        out = OutputAgreement("y", {metric: deployed}, {metric: simulated}, {metric: between})
        return DeploymentCheck((metric,), 4, ("CPUExecutionProvider",), (out,)).summary()

    same = check(0.995530, 0.995508, 0.995400)
    assert "differs from ptqdebug's simulation" in same and "of the same size (within a tenth)" in same
    assert "can differ from every score" not in same
    apart = check(0.990, 0.995508, 0.995400)  # 0.0100 against 0.0045 lost: not the same size
    assert "can differ from every score of the analyses" in apart and "same size" not in apart
    assert "same size" not in check(0.2, 0.1, 0.05, "mse")  # judged for cosine similarity only


def test_a_narrow_agreement_is_said_to_be_narrow() -> None:
    """deployed-vs-simulated 0.998214 against a simulated 0.998 (a trial on an OCR model): closer
    than quantization's own error, but by little; the summary no longer says the analyses simply
    describe the deployed model."""
    from ptqdebug.analyses.deployment import OutputAgreement

    def check(deployed: float, simulated: float, between: float) -> DeploymentCheck:
        out = OutputAgreement("y", {"cosine-similarity": deployed}, {"cosine-similarity": simulated},
                              {"cosine-similarity": between})
        return DeploymentCheck(("cosine-similarity",), 4, ("CPUExecutionProvider",), (out,))

    narrow = check(0.9979, 0.998, 0.998214)
    assert narrow.agrees and "agrees with ptqdebug's simulation, narrowly" in narrow.summary()
    assert "what separates them is up to 89% of quantization's own error at an output" in narrow.summary()
    wide = check(0.9979, 0.998, 0.99995)  # 2.5% of the loss
    assert wide.agrees and "so the analyses describe the deployed model." in wide.summary() and "narrowly" not in wide.summary()
    # judged per output, as agreement is: one wide output does not hide a narrow one (the mean did)
    outs = (OutputAgreement("a", {"cosine-similarity": 0.90}, {"cosine-similarity": 0.90}, {"cosine-similarity": 0.999}),
            OutputAgreement("b", {"cosine-similarity": 0.9999}, {"cosine-similarity": 0.9999}, {"cosine-similarity": 0.99991}))
    mixed = DeploymentCheck(("cosine-similarity",), 4, ("CPUExecutionProvider",), outs)
    assert mixed.agrees and "narrowly" in mixed.summary() and "up to 90%" in mixed.summary()
    # and the report's box is amber, not the green of a clear agreement
    from ptqdebug.report.html import _deployment

    assert mixed.to_dict()["narrow"] is True and wide.to_dict()["narrow"] is False
    assert _deployment(mixed.to_dict()).startswith('<div class="deploy warn">')
    assert _deployment(wide.to_dict()).startswith('<div class="deploy ok">')


def test_runall_checks_the_recommended_models_as_deployed(tmp_path: Path) -> None:
    """With check_deployment, runall also deploys the models it recommends (a trial's int16 fix
    scored 0.996395 simulated and deployed at 0.980479): the same numbers as exporting each and
    running check-deployment on the file, and the simulated score is the one the verdict predicts."""
    from ptqdebug.calibration import calibrate
    from tests.calibration.models import make_samples, tiny_cnn

    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    cal = calibrate(tmp_path / "float.onnx", make_samples(4), tmp_path / "cal", method="max")
    run = dbg.runall(cal.model_path, cal.data_dir, tmp_path / "d", node_type="node", data_num=None,
                     pick_threshold=0.99996, check_deployment=True)
    keep = {"float32": run.verdict.keep_float, "int16": run.verdict.keep_int16}
    assert keep["float32"] and keep["int16"] and set(run.fix_deployment) == {"float32", "int16"}  # the premise
    for qtype, nodes in keep.items():
        option = {"float_nodes": list(nodes)} if qtype == "float32" else {"int16_nodes": list(nodes)}
        written = dbg.export_model(cal.model_path, tmp_path / f"{qtype}.onnx", **option).path
        alone, got = dbg.check_deployment(written, cal.data_dir), run.fix_deployment[qtype]
        assert [o.output for o in got.outputs] == [o.output for o in alone.outputs]
        for a, b in zip(got.outputs, alone.outputs):
            for kind in ("deployed", "simulated", "between"):
                assert getattr(a, kind)["cosine-similarity"] == pytest.approx(getattr(b, kind)["cosine-similarity"], abs=1e-9)
        assert got.outputs[0].simulated["cosine-similarity"] == pytest.approx(run.verdict.kept[qtype][1], abs=1e-9)
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    assert set(results["fix_deployment"]) == {"float32", "int16"}
    page = (tmp_path / "d" / "index.html").read_text()
    assert "Deployment check of the model with them in float" in page
    assert "Deployment check of the model with their activations in int16" in page
