"""The engine agrees with brute force (one model and session per configuration)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ptqdebug.engine.engine import Engine
from ptqdebug.model import load_model
from tests.conftest import QDQ_SETTINGS
from tests.support.oracle import cosine, oracle_from_file, oracle_from_model


def _model(cnn_dir: Path, name: str):
    float_model = cnn_dir / "float.onnx" if "stored" in name else None
    return load_model(cnn_dir / f"{name}.onnx", float_model=float_model)


def _configs(cm, rng: np.random.Generator) -> list[frozenset[str]]:
    names = [q.name for q in cm.quantizers if q.exact]
    configs = [frozenset([n]) for n in names]
    configs += [frozenset(cm.node_quantizers[n]) for n in cm.sensitivity_nodes]
    configs += [frozenset(rng.choice(names, size=k, replace=False)) for k in (2, 3, 5)]
    configs += [frozenset(), frozenset(names)]
    return configs


@pytest.mark.parametrize("name", list(QDQ_SETTINGS))
@pytest.mark.parametrize("segments", [1, 3, None])
def test_engine_matches_brute_force(cnn_dir: Path, samples, name: str, segments: int | None) -> None:
    cm = _model(cnn_dir, name)
    engine = Engine(cm, segments=segments, shapes={"input": (1, 3, 16, 16)})
    rng = np.random.default_rng(0)
    for sample in samples[:2]:
        ref = engine.reference(sample, cm.outputs)
        for config in _configs(cm, rng):
            got = engine.run(ref, config)
            want = oracle_from_model(cm, config, sample)
            for out in cm.outputs:
                assert cosine(got[out], want[out]) >= 1 - 1e-6
                np.testing.assert_allclose(got[out], want[out], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in QDQ_SETTINGS if "keep" in n])
def test_engine_matches_edited_file(cnn_dir: Path, samples, name: str) -> None:
    """An oracle that shares no code with ptqdebug: cut disabled Q/DQ pairs out of the file."""
    cm = _model(cnn_dir, name)
    engine = Engine(cm, shapes={"input": (1, 3, 16, 16)})
    for sample in samples[:2]:
        ref = engine.reference(sample, cm.outputs)
        for config in _configs(cm, np.random.default_rng(1)):
            got = engine.run(ref, config)
            want = oracle_from_file(cnn_dir / f"{name}.onnx", config, sample)
            for out in cm.outputs:
                assert cosine(got[out], want[out]) >= 1 - 1e-6


@pytest.mark.parametrize("name", list(QDQ_SETTINGS))
def test_all_off_is_the_float_model_and_all_on_is_the_file(cnn_dir: Path, samples, name: str) -> None:
    float_model = cnn_dir / "float.onnx"
    cm = load_model(cnn_dir / f"{name}.onnx", float_model=float_model)
    engine = Engine(cm)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    float_sess = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"])
    file_sess = ort.InferenceSession(str(cnn_dir / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
    for sample in samples[:3]:
        ref = engine.reference(sample, cm.outputs)
        # int32 biases stay quantized (not calibration nodes): equal up to their tiny rounding
        assert cosine(ref["logits"], float_sess.run(None, sample)[0]) > 1 - 1e-7
        np.testing.assert_allclose(ref["logits"], float_sess.run(None, sample)[0], rtol=1e-3, atol=1e-3)
        on = engine.run(ref, cm.calibrated_configuration)
        np.testing.assert_array_equal(on["logits"], file_sess.run(None, sample)[0])


def test_deleted_relu_is_inferred_without_the_float_model(cnn_dir: Path, samples) -> None:
    """ORT deleted the Relu before each [0, max] range; switched off, those nodes apply it again."""
    cm = load_model(cnn_dir / "pc_int8_pairs.onnx")
    assert any("deleted" in n for n in cm.notes)
    restored = [q.name for q in cm.quantizers if q.off_node is not None]
    assert restored and all(cm.quantizer_map[q].thresholds[0] == 0.0 for q in restored)
    float_sess = ort.InferenceSession(str(cnn_dir / "float.onnx"), providers=["CPUExecutionProvider"])
    ref = Engine(cm).reference(samples[0], cm.outputs)
    assert cosine(ref["logits"], float_sess.run(None, samples[0])[0]) > 1 - 1e-7


def test_kept_activations_need_no_restoring(cnn_dir: Path) -> None:
    cm = load_model(cnn_dir / "pc_int8_pairs_keep.onnx")
    assert all(q.off_node is None for q in cm.quantizers)
    assert cm.notes == ()


def test_runs_only_what_changes(cnn_dir: Path, samples) -> None:
    cm = _model(cnn_dir, "pc_int8_pairs_keep")
    engine = Engine(cm, segments=4, shapes={"input": (1, 3, 16, 16)})
    assert len(engine.plan.segments) >= 3
    ref = engine.reference(samples[0], cm.outputs)
    last = engine.plan.segments[-1]
    q = last.quantizers[-1]
    before = engine.runs
    engine.run(ref, {q})
    assert engine.runs - before == 1
    first = engine.plan.segments[0].quantizers[0]
    before = engine.runs
    engine.run(ref, {first})
    assert engine.runs - before == len(engine.plan.segments)
    before = engine.runs
    assert engine.run(ref, set())["logits"] is ref["logits"]
    assert engine.runs == before


def test_advance_from_an_earlier_run_equals_the_run_from_float(cnn_dir: Path, samples) -> None:
    """A chain of runs, each starting from the one before: bit-identical to runs from the float
    reference, and cheaper where the configurations first differ late in the graph."""
    cm = _model(cnn_dir, "pc_int8_pairs_keep")
    engine = Engine(cm, segments=4, shapes={"input": (1, 3, 16, 16)})
    ref = engine.reference(samples[0], cm.outputs)
    calibrated = cm.calibrated_configuration
    chain = [calibrated]  # partial quantization's order: switch one more node off each time
    for node in reversed(cm.sensitivity_nodes):
        chain.append(chain[-1] - frozenset(cm.node_quantizers[node]))
    chain += _configs(cm, np.random.default_rng(2))  # and arbitrary jumps
    state, runs_chained = ref, 0
    for config in chain:
        before = engine.runs
        state = engine.advance(state, config)
        runs_chained += engine.runs - before
        assert state.enabled == config & calibrated
        want = engine.run(ref, config)
        for out in cm.outputs:
            np.testing.assert_array_equal(state.values[out], want[out])
    before = engine.runs
    for config in chain:
        engine.run(ref, config)
    assert runs_chained < engine.runs - before


def test_advance_never_keeps_a_stale_intermediate_tensor(cnn_dir: Path, samples) -> None:
    """A run that does not fetch a tensor the reference fetched drops it: a later run cannot read
    the float value as if it belonged to the configuration."""
    cm = _model(cnn_dir, "pc_int8_pairs_keep")
    engine = Engine(cm, segments=3)
    inner = [t for n in cm.node_outputs for t in cm.node_outputs[n] if engine.plan.producer_segment.get(t) is not None
             and t not in {o for seg in engine.plan.segments for o in seg.outputs}]
    assert inner
    ref = engine.reference(samples[0], [*cm.outputs, *inner])
    state = engine.advance(ref, cm.calibrated_configuration, cm.outputs)
    assert not set(inner) & set(state.values)
    with pytest.raises(ValueError, match="not fetched"):
        engine.advance(state, (), inner)


@pytest.mark.parametrize("name", list(QDQ_SETTINGS))
def test_shared_initializers_change_nothing(cnn_dir: Path, samples, name: str) -> None:
    """Every initializer given to the sessions from one shared copy (as large weights are) gives
    the same values, bit for bit, as weights embedded in each session."""
    cm = _model(cnn_dir, name)
    embedded = Engine(cm, segments=3, shapes={"input": (1, 3, 16, 16)})
    embedded.SHARE_BYTES = 2**62  # type: ignore[misc]
    shared = Engine(cm, segments=3, shapes={"input": (1, 3, 16, 16)})
    shared.SHARE_BYTES = 0  # type: ignore[misc]
    r1, r2 = embedded.reference(samples[0], cm.outputs), shared.reference(samples[0], cm.outputs)
    for config in _configs(cm, np.random.default_rng(3)):
        a, b = embedded.run(r1, config), shared.run(r2, config)
        for out in cm.outputs:
            np.testing.assert_array_equal(a[out], b[out])
    assert shared._shared and not embedded._shared
    weights = {cm.quantizer_map[q.name].input for q in cm.weight_quantizers if q.exact}
    assert weights <= set(shared._shared)  # one copy serves the fed float weights too
    for q in cm.weight_quantizers:
        if q.exact:
            assert shared.weight_values(q.name)[0] is shared._shared[q.input][0]


def test_no_session_per_candidate(cnn_dir: Path, samples) -> None:
    cm = _model(cnn_dir, "pc_int8_pairs")
    engine = Engine(cm, segments=3)
    ref = engine.reference(samples[0], cm.outputs)
    for q in cm.quantizers:
        engine.run(ref, {q.name})
    for a, b in itertools.combinations([q.name for q in cm.quantizers], 2):
        engine.run(ref, {a, b})
    assert len(engine._sessions) <= 3 * len(engine.plan.segments)  # float, activations, all


def test_fetches_intermediate_tensors(cnn_dir: Path, samples) -> None:
    cm = _model(cnn_dir, "pc_int8_pairs_keep")
    engine = Engine(cm, segments=3)
    tensors = [t for n in cm.node_outputs for t in cm.node_outputs[n]]
    ref = engine.reference(samples[0], tensors)
    config = frozenset(q.name for q in cm.quantizers[:4])
    got = engine.run(ref, config)
    want = oracle_from_model(cm, config, samples[0], outputs=tensors)
    float_want = oracle_from_model(cm, (), samples[0], outputs=tensors)
    for t in tensors:
        np.testing.assert_allclose(got[t], want[t], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ref[t], float_want[t], rtol=1e-4, atol=1e-5)


def test_weights_stored_as_integers_stay_on_without_float_model(cnn_dir: Path, samples) -> None:
    cm = load_model(cnn_dir / "pc_int8_stored.onnx")
    fixed = cm.fixed_quantizers
    assert fixed and all(cm.quantizer_map[q].kind == "weight" for q in fixed)
    assert any("cannot be switched off exactly" in n for n in cm.notes)
    engine = Engine(cm)
    ref = engine.reference(samples[0], cm.outputs)
    want = oracle_from_model(cm, fixed, samples[0])
    np.testing.assert_allclose(ref["logits"], want["logits"], rtol=1e-5, atol=1e-6)


def test_float_weights_recovered_from_float_model(cnn_dir: Path, samples) -> None:
    # (both with the float model: it gives the int32 biases their float values too)
    pairs = load_model(cnn_dir / "pc_int8_pairs.onnx", float_model=cnn_dir / "float.onnx")
    stored = load_model(cnn_dir / "pc_int8_stored.onnx", float_model=cnn_dir / "float.onnx")
    assert not stored.fixed_quantizers
    e1, e2 = Engine(pairs), Engine(stored)
    r1, r2 = e1.reference(samples[0], ["logits"]), e2.reference(samples[0], ["logits"])
    assert cosine(r1["logits"], r2["logits"]) > 1 - 1e-7
    w1 = [q.name for q in pairs.weight_quantizers]
    w2 = [q.name for q in stored.weight_quantizers]
    for a, b in zip(w1, w2):
        assert cosine(e1.run(r1, {a})["logits"], e2.run(r2, {b})["logits"]) > 1 - 1e-7


def test_providers_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptqdebug.engine.runtime import resolve_providers
    from ptqdebug.errors import OptionError

    monkeypatch.delenv("PTQDEBUG_PROVIDERS", raising=False)
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    monkeypatch.setenv("PTQDEBUG_PROVIDERS", "cpu")
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    monkeypatch.setenv("PTQDEBUG_PROVIDERS", "FooExecutionProvider")
    with pytest.raises(OptionError, match="FooExecutionProvider"):
        resolve_providers(None)
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]  # an explicit choice wins


def test_an_onnxruntime_too_old_for_the_file_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """What onnxruntime-gpu 1.31 said of a file saved by a newer onnx (IR 14), seen on a GPU machine:
    one line, without ONNX Runtime's C++ source location, and what to do about it."""
    import onnx

    from ptqdebug.engine import runtime
    from ptqdebug.errors import ModelError

    said = ("[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model("
            "onnx::ModelProto&&, const onnxruntime::PathString&, const onnxruntime::logging::Logger&, const onnxruntime::ModelOptions&) "
            "Unsupported model IR version: 14, max supported IR version: 13")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(said)

    monkeypatch.setattr(runtime.ort, "InferenceSession", refuse)
    with pytest.raises(ModelError) as exc:
        runtime.make_session(onnx.ModelProto(), ["CPUExecutionProvider"], 1)
    text = str(exc.value)
    assert "\n" not in text and "onnxruntime_src" not in text and "Model::Model" not in text
    assert "(Unsupported model IR version: 14, max supported IR version: 13)" in text
    assert "upgrade onnxruntime, or save the model with an ir_version it reads" in text
