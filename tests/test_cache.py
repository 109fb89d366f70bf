"""The results cache: a hit reruns nothing, and any change to model, data or options is a miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import ptqdebug as dbg


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PTQDEBUG_CACHE_DIR", str(folder))
    return folder


def _sweep(model, data, **kw):
    ctx = dbg.open_context(model, data, **kw)
    result = dbg.sensitivity_of_nodes(ctx, node_type="activation", metrics=["cosine-similarity", "mse"])
    return ctx, result


def test_hit_reruns_nothing(cnn_dir: Path, private_cache: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    _, first = _sweep(model, data)
    assert len(list(private_cache.glob("*.json"))) == 1
    ctx, second = _sweep(model, data)
    assert ctx.engine.runs == 0 and ctx.cache.hits == 1
    assert second.as_mapping() == first.as_mapping() and second.entries == first.entries


def test_changed_weight_data_or_option_is_a_miss(cnn_dir: Path, tmp_path: Path, private_cache: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    _sweep(model, data)
    # one weight changed by one float32 step
    proto = onnx.load(model)
    w = next(t for t in proto.graph.initializer if t.name == "conv1.weight")
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] = np.nextafter(arr.flat[0], np.float32(np.inf))
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    onnx.save(proto, tmp_path / "changed.onnx")
    ctx, _ = _sweep(tmp_path / "changed.onnx", data)
    assert ctx.cache.hits == 0 and ctx.engine.runs > 0
    # one input value changed
    samples = [{"input": np.load(p)} for p in sorted((data / "input").glob("*.npy"), key=lambda p: int(p.stem))]
    samples[0]["input"] = samples[0]["input"].copy()
    samples[0]["input"].flat[5] += 1e-3
    ctx, _ = _sweep(model, samples)
    assert ctx.cache.hits == 0
    # another option
    ctx = dbg.open_context(model, data)
    dbg.sensitivity_of_nodes(ctx, node_type="activation", metrics=["cosine-similarity"])
    assert ctx.cache.hits == 0


def test_other_session_numerics_are_a_miss(cnn_dir: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results computed with other session options (graph optimizations on, before stop 13) round
    differently: they are never reused."""
    import ptqdebug.engine.runtime as runtime

    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    _sweep(model, data)
    ctx, _ = _sweep(model, data)
    assert ctx.cache.hits == 1  # the premise: the same numerics hit
    monkeypatch.setattr(runtime, "NUMERICS", "graph optimizations on")
    ctx, _ = _sweep(model, data)
    assert ctx.cache.hits == 0 and ctx.engine.runs > 0


def test_no_cache_computes_afresh(cnn_dir: Path, private_cache: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    _sweep(model, data)
    ctx, _ = _sweep(model, data, cache=False)
    assert ctx.cache.hits == 0 and ctx.engine.runs > 0


def test_corrupt_entry_is_a_miss(cnn_dir: Path, private_cache: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    _sweep(model, data)
    for f in private_cache.glob("*.json"):
        f.write_text("{not json")
    ctx, result = _sweep(model, data)
    assert ctx.cache.hits == 0 and result.entries


def test_runall_reuses_a_previous_sweep(cnn_dir: Path, tmp_path: Path, private_cache: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    first = dbg.runall(model, data, tmp_path / "a")
    second = dbg.runall(model, data, tmp_path / "b")
    assert first.cache_hits == 0 and second.cache_hits == 3  # weight, activation and node sweeps
    assert (tmp_path / "b" / "node_sensitivity" / "sensitivity_of_weight.log").read_text() == \
        (tmp_path / "a" / "node_sensitivity" / "sensitivity_of_weight.log").read_text()
    assert second.sensitivities["activation"].as_mapping()


def test_a_context_refuses_to_go_on_when_its_files_changed(cnn_dir: Path, tmp_path: Path) -> None:
    """The model is held in memory but the data is read on demand (and the deployment check runs
    the file): a context whose files changed would mix old and new, so it says so instead."""
    import shutil

    model, data = tmp_path / "m.onnx", tmp_path / "calibration_data"
    shutil.copy(cnn_dir / "pc_int8_pairs.onnx", model)
    shutil.copytree(cnn_dir / "calibration_data", data)
    ctx = dbg.open_context(model, data, cache=False)
    first = dbg.get_sensitivity_of_nodes(ctx, calibrated_data=data, node_type="activation")
    assert dbg.get_sensitivity_of_nodes(ctx, calibrated_data=None, node_type="activation") == first  # unchanged: fine
    sample = data / "input" / "0.npy"
    np.save(sample, np.load(sample) * 2)  # overwritten in place
    with pytest.raises(dbg.OptionError, match=r"0\.npy' changed since this context was opened; open a new one"):
        dbg.get_sensitivity_of_nodes(ctx, calibrated_data=data, node_type="activation")
    ctx = dbg.open_context(model, data, cache=False)
    np.save(data / "input" / "99.npy", np.load(sample))  # a sample more
    with pytest.raises(dbg.OptionError, match="the files of the calibration data changed since"):
        dbg.check_deployment(ctx, data)
    ctx = dbg.open_context(model, data, cache=False)
    shutil.copy(cnn_dir / "pc_int8_pairs_keep.onnx", model)  # recalibrated into the same file
    with pytest.raises(dbg.OptionError, match=r"m\.onnx' changed since"):
        dbg.runall(ctx, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_context_refuses_other_data_and_runtime_options(cnn_dir: Path, tmp_path: Path) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    ctx = dbg.open_context(model, str(data))
    dbg.get_sensitivity_of_nodes(ctx, calibrated_data=data, node_type="weight")  # the same folder, another spelling
    with pytest.raises(dbg.OptionError, match="calibrated_data differs from the data this context was opened with"):
        dbg.get_sensitivity_of_nodes(ctx, calibrated_data=tmp_path, node_type="weight")
    for option in ({"float_model": cnn_dir / "float.onnx"}, {"providers": "cpu"}, {"cache": False}):
        with pytest.raises(dbg.OptionError, match=f"{next(iter(option))} is fixed when the context is opened"):
            dbg.get_sensitivity_of_nodes(ctx, calibrated_data=data, node_type="weight", **option)


def test_results_never_go_into_a_contexts_data_folder(cnn_dir: Path) -> None:
    data = cnn_dir / "calibration_data"
    ctx = dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", data)
    with pytest.raises(dbg.OptionError, match="is inside the calibration data folder"):
        dbg.runall(ctx, None, data / "results")
    with pytest.raises(dbg.OptionError, match="is inside the calibration data folder"):
        dbg.plot_acc_error(None, ctx, save_dir=data / "results")
    assert not (data / "results").exists()
