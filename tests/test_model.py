"""Reading calibrated models: names, maps, order, and clear errors."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.errors import ModelError, OptionError, UnknownNodeError

# A QDQ graph where Conv_1 reads its activation calibration node through Relu and Reshape
# (pass-through ops, reference §2.2), and Add reads two calibration nodes.
TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,4,4] x) => (float[1,2,4,4] out)
<float s = {0.05}, int8 z = {0}, float[2,2,1,1] w = {0.3, -0.2, 0.1, 0.7}, int64[4] shape = {1, 2, 4, 4}> {
    qx = QuantizeLinear (x, s, z)
    dx = DequantizeLinear (qx, s, z)
    qw = QuantizeLinear (w, s, z)
    dw = DequantizeLinear (qw, s, z)
    c0 = Conv (dx, dw)
    q1 = QuantizeLinear (c0, s, z)
    d1 = DequantizeLinear (q1, s, z)
    r = Relu (d1)
    re = Reshape (r, shape)
    c1 = Conv (re, dw)
    sum = Add (c1, dx)
    out = Identity (sum)
}
"""


def _save(tmp_path: Path, text: str = TEXT, names: bool = True) -> Path:
    model = onnx.parser.parse_model(text)
    if names:
        for i, n in enumerate(model.graph.node):
            n.name = {"QuantizeLinear": "Q", "Conv": "Conv", "Relu": "Relu", "Reshape": "Reshape", "Add": "Add",
                      "Identity": "Id", "DequantizeLinear": "DQ"}[n.op_type] + f"_{i}"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def test_quantizers_names_kinds_and_order(tmp_path: Path) -> None:
    cm = dbg.load_model(_save(tmp_path))
    assert [(q.name, q.kind) for q in cm.quantizers] == [("Q_0", "activation"), ("Q_2", "weight"), ("Q_5", "activation")]
    assert cm.node_quantizers["Conv_4"] == ("Q_0", "Q_2")
    assert cm.node_quantizers["Conv_9"] == ("Q_5", "Q_2")  # through Reshape and Relu
    assert cm.node_quantizers["Add_10"] == ("Q_0",)
    assert cm.node_quantizers["Relu_7"] == ("Q_5",)
    assert cm.sensitivity_nodes == ("Conv_4", "Relu_7", "Reshape_8", "Conv_9", "Add_10")
    assert cm.quantizer_consumers["Q_2"] == ("Conv_4", "Conv_9")
    assert cm.quantizer_nodes["Q_5"] == ("Relu_7", "Reshape_8", "Conv_9")
    assert cm.expand(["Conv_9", "Q_0"]) == ("Q_5", "Q_2", "Q_0")


def test_unknown_names_and_nodes_without_calibration(tmp_path: Path) -> None:
    cm = dbg.load_model(_save(tmp_path))
    with pytest.raises(UnknownNodeError, match="'Conv_99' is not in the model; did you mean 'Conv_9'"):
        cm.expand("Conv_99")
    with pytest.raises(OptionError, match="has no calibration node"):
        cm.expand("Id_11")


def test_unnamed_nodes_get_stable_names(tmp_path: Path) -> None:
    path = _save(tmp_path, names=False)
    a, b = dbg.load_model(path), dbg.load_model(path)
    assert [q.name for q in a.quantizers] == [q.name for q in b.quantizers] == ["QuantizeLinear_0", "QuantizeLinear_2", "QuantizeLinear_5"]
    assert "Conv_9" in a.node_outputs


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    model = onnx.load(_save(tmp_path))
    model.graph.node[4].name = model.graph.node[9].name
    onnx.save(model, tmp_path / "dup.onnx")
    with pytest.raises(ModelError, match="two nodes are named 'Conv_9'"):
        dbg.load_model(tmp_path / "dup.onnx")


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    (b"not a protobuf at all \x00\xff", "could not be read as ONNX"),
])
def test_unreadable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        dbg.load_model(path)


def test_truncated_file(tmp_path: Path) -> None:
    data = _save(tmp_path).read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        dbg.load_model(tmp_path / "t.onnx")


def test_float_model_is_not_calibrated(tmp_path: Path) -> None:
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu (x) }"""
    with pytest.raises(ModelError, match="no calibration nodes.*ptqdebug calibrate"):
        dbg.load_model(_save(tmp_path, text, names=False))


def test_qoperator_models_are_explained(tmp_path: Path) -> None:
    text = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float s = {0.1}, int8 z = {0}> {
        q = QuantizeLinear (x, s, z)
        y8 = Identity (q)
        y = DequantizeLinear (y8, s, z)
    }"""
    with pytest.raises(ModelError, match="feeds Identity node.*QDQ"):
        dbg.load_model(_save(tmp_path, text, names=False))


def test_cycle_is_reported(tmp_path: Path) -> None:
    model = onnx.load(_save(tmp_path))
    model.graph.node[0].input[0] = "sum"  # Q_0 now reads Add_10's output
    onnx.save(model, tmp_path / "cyc.onnx")
    with pytest.raises(ModelError):
        dbg.load_model(tmp_path / "cyc.onnx")


def test_a_float_model_with_other_weights_is_refused(cnn_dir: Path, tmp_path: Path) -> None:
    """The float model gives integer-stored weights their float values: one whose weights are not
    the ones the calibrated model quantized (another training run, another model with the same
    names) would make every weight score nonsense, so it is refused in one line."""
    import numpy as np
    from onnx import numpy_helper

    load_model = dbg.load_model
    load_model(cnn_dir / "pc_int8_stored.onnx", float_model=cnn_dir / "float.onnx")  # the right one
    other = onnx.load(cnn_dir / "float.onnx")
    rng = np.random.default_rng(0)
    for i, t in enumerate(other.graph.initializer):
        w = numpy_helper.to_array(t)
        if w.ndim == 4:  # the convolutions' weights, retrained
            other.graph.initializer[i].CopyFrom(numpy_helper.from_array(rng.normal(0, w.std(), w.shape).astype(w.dtype), t.name))
    onnx.save(other, tmp_path / "other.onnx")
    with pytest.raises(ModelError, match=r"the float model's weight '(.*)' is typically [\d.]+ quantization steps away from "
                                         r"what the calibrated model stores as '(.*)' .*expected the float model this model "
                                         r"was calibrated from .*quant_pre_process") as caught:
        load_model(cnn_dir / "pc_int8_stored.onnx", float_model=tmp_path / "other.onnx")
    import re

    float_name, stored_name = re.search(r"weight '(.*?)' .* stores as '(.*?)'", str(caught.value)).groups()
    assert float_name in {t.name for t in other.graph.initializer}  # each model's own name for it
    assert stored_name in {t.name for t in onnx.load(cnn_dir / "pc_int8_stored.onnx").graph.initializer}


def test_a_float_model_is_checked_against_weights_stored_as_floats_too(cnn_dir: Path, tmp_path: Path) -> None:
    """With Q→DQ weight pairs the calibrated model keeps its float weights, so the float model
    is needed only for a deleted Relu and biases, and a wrong one used to pass unnoticed."""
    import numpy as np
    from onnx import numpy_helper

    from tests.calibration.models import tiny_cnn

    pairs = cnn_dir / "pc_int8_pairs.onnx"
    dbg.load_model(pairs, float_model=cnn_dir / "float.onnx")  # the right one
    onnx.save(tiny_cnn(), tmp_path / "unrelated.onnx")
    with pytest.raises(ModelError, match=r"the float model holds none of this model's \d+ weights .*expected the float "
                                         r"model this model was calibrated from"):
        dbg.load_model(pairs, float_model=tmp_path / "unrelated.onnx")
    other = onnx.load(cnn_dir / "float.onnx")
    rng = np.random.default_rng(1)
    for i, t in enumerate(other.graph.initializer):
        w = numpy_helper.to_array(t)
        if w.ndim == 4:  # the same graph, retrained convolutions
            other.graph.initializer[i].CopyFrom(numpy_helper.from_array(rng.normal(0, w.std(), w.shape).astype(w.dtype), t.name))
    onnx.save(other, tmp_path / "retrained.onnx")
    with pytest.raises(ModelError, match=r"quantization steps away from what the calibrated model stores"):
        dbg.load_model(pairs, float_model=tmp_path / "retrained.onnx")


def test_int32_biases_with_the_float_model_are_weight_calibration_nodes(cnn_dir: Path, samples: list) -> None:
    """ONNX Runtime quantizes biases to int32. With the float model each is a weight calibration
    node, so all-off is the float model and what its rounding costs is scored (brute force: the
    float model with that one bias replaced by its dequantized int32 value, a session each);
    without it, a note says that they stay quantized everywhere."""
    import numpy as np
    import onnxruntime as ort
    from onnx import numpy_helper

    from ptqdebug.metrics import METRICS, compare

    path, fpath, data = cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "float.onnx", cnn_dir / "calibration_data"
    plain, with_float = dbg.load_model(path), dbg.load_model(path, float_model=fpath)
    biases = [q for q in with_float.weight_quantizers if q.qtype == "int32"]
    assert len(biases) >= 3 and not any(q.qtype == "int32" for q in plain.weight_quantizers)
    stored = dbg.load_model(cnn_dir / "pc_int8_stored.onnx")  # integer weights and biases, no float model: one note
    assert [n for n in stored.notes if "int32" in n] == [n for n in stored.notes if "weights stored as integers" in n]
    assert any(f"and {len(biases)} int32 biases) cannot be switched off" in n for n in stored.notes)
    assert not any("int32" in n for n in with_float.notes)

    calibrated, floating = onnx.load(path), onnx.load(fpath)
    inits = {t.name: numpy_helper.to_array(t) for t in calibrated.graph.initializer}
    by_name = {n.name: n for n in floating.graph.node}

    def run(model: onnx.ModelProto, sample: dict) -> np.ndarray:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, sample)[0]

    cos = METRICS["cosine-similarity"]
    floats = [run(floating, s) for s in samples[:2]]
    got = dbg.get_sensitivity_of_nodes(path, calibrated_data=data, node_type="weight", float_model=fpath, data_num=2)
    for q in biases:
        (dq,) = [n for n in calibrated.graph.node if n.name == q.name]
        stored, scale = inits[dq.input[0]], inits[dq.input[1]]
        reader = next(n for n in calibrated.graph.node if dq.output[0] in n.input)
        name = by_name[reader.name].input[list(reader.input).index(dq.output[0])]  # the float model's bias
        model = onnx.ModelProto()
        model.CopyFrom(floating)
        for t in model.graph.initializer:
            if t.name == name:
                t.CopyFrom(numpy_helper.from_array((stored.astype(np.float32) * scale).astype(np.float32), name))
        want = np.mean([compare([cos], f, run(model, s))[0] for f, s in zip(floats, samples[:2])])
        assert got[q.name]["cosine-similarity"] == pytest.approx(want, abs=1e-7), q.name
    ctx = dbg.open_context(path, data, float_model=fpath)
    out = ctx.model.outputs[0]
    assert np.allclose(ctx.reference(0, (out,))[out], floats[0], rtol=0, atol=1e-6)  # all off: the float model


def test_a_dynamically_quantized_model_is_named_as_such(cnn_dir: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(cnn_dir / "float.onnx"), str(tmp_path / "dyn.onnx"))
    with pytest.raises(ModelError, match=r"the model is dynamically quantized \(.*DynamicQuantizeLinear.*\): its activations "
                                         r"are quantized at run time .*run `ptqdebug calibrate FLOAT_MODEL DATA -o OUT`"):
        dbg.load_model(tmp_path / "dyn.onnx")


def test_the_note_on_deleted_relus_says_what_it_knows(cnn_dir: Path) -> None:
    """Without the float model the deleted Relu is inferred from a range starting at 0, which a
    variance or 1 + erf also has: the note said 'the quantizer deleted the Relu' for 37 such
    nodes of ViT-S; it now says what it saw, and what the float model would tell."""
    inferred = dbg.load_model(cnn_dir / "pc_int8_pairs.onnx")
    (note,) = [n for n in inferred.notes if "Relu" in n]
    assert "start their range at 0 right after an op that can be negative" in note and "Pass --float-model to know" in note
    restored = [q.name for q in inferred.quantizers if q.off_node is not None]
    assert f"({restored[0]}" in note  # named (NNCF's YOLOv8n had four, which the note did not say)
    known = dbg.load_model(cnn_dir / "pc_int8_pairs.onnx", float_model=cnn_dir / "float.onnx")
    (note,) = [n for n in known.notes if "Relu" in n]
    assert note.startswith("the quantizer deleted the Relu/Clip before") and note.endswith("(from the float model)")


# One QuantizeLinear read by two DequantizeLinear nodes (ONNX Runtime's mixed-precision "convert"
# writes this): one calibration node, its readers on both sides.
TWO_DQ = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,4,4] x) => (float[1,2,4,4] out)
<float s = {0.05}, float s2 = {0.075}, float[1] s1 = {0.05}, int8 z = {0}> {
    qx = QuantizeLinear (x, s, z)
    da = DequantizeLinear (qx, s, z)
    db = DequantizeLinear (qx, S2, z)
    ra = Relu (da)
    nb = Neg (db)
    out = Add (ra, nb)
}
"""


def _two_dq(tmp_path: Path, second_scale: str) -> Path:
    model = onnx.parser.parse_model(TWO_DQ.replace("S2", second_scale))
    if second_scale == "h":  # (the parser reads no float16 literal)
        import numpy as np

        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.05, np.float16), "h"))
    for n, name in zip(model.graph.node, ["q", "dq_a", "dq_b", "relu", "neg", "add"]):
        n.name = name
    path = tmp_path / f"two_dq_{second_scale}.onnx"
    onnx.save(model, path)
    return path


def test_one_quantize_read_by_two_dequantize_is_one_calibration_node(tmp_path: Path) -> None:
    """No invented node: the readers of both DequantizeLinear nodes find the one calibration node,
    and the node sweep's candidates are the model's own nodes, scored as the brute force (the
    model with only that node's pair kept) scores them."""
    import numpy as np
    import onnxruntime as ort

    path = _two_dq(tmp_path, "s")
    cm = dbg.load_model(path)
    assert [q.name for q in cm.quantizers] == ["q"]
    assert list(cm.node_outputs) == ["relu", "neg", "add"]
    assert cm.quantizer_consumers["q"] == ("relu", "neg")
    assert set(cm.node_edges()) == {("relu", "add"), ("neg", "add")}
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    sweep = dbg.get_sensitivity_of_nodes(path, calibrated_data=[{"x": x}], node_type="node", cache=False)
    assert set(sweep) == {"relu", "neg", "add"}  # (add finds it through the Relu, a pass-through op)

    def run(model: onnx.ModelProto) -> np.ndarray:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    quantized, plain = onnx.load(path), onnx.load(path)
    for n in plain.graph.node:  # float: every reader reads x
        n.input[:] = ["x" if t in ("da", "db") else t for t in n.input]
    ref, got = run(plain).ravel().astype(np.float64), run(quantized).ravel().astype(np.float64)
    cosine = float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got))
    # each candidate switches on the one calibration node, for the readers of both DequantizeLinear nodes
    assert cosine < 0.9999  # (the premise: quantization shows)
    assert all(v["cosine-similarity"] == pytest.approx(cosine, abs=1e-7) for v in sweep.values())


def test_two_dequantize_with_other_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"QuantizeLinear node 'q' is read by DequantizeLinear nodes 'dq_a' and 'dq_b' "
                                         r"with different scales"):
        dbg.load_model(_two_dq(tmp_path, "s2"))
    with pytest.raises(ModelError, match="output types"):  # a float16 scale: the copy would have the other's type
        dbg.load_model(_two_dq(tmp_path, "h"))
    assert [q.name for q in dbg.load_model(_two_dq(tmp_path, "s1")).quantizers] == ["q"]  # [1] is the scalar's scale


def test_a_calibrated_model_given_as_the_float_model_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path)
    with pytest.raises(ModelError, match=r"the float model '.*m\.onnx' holds calibration nodes \(QuantizeLinear node 'Q_0'\): "
                                         r"it is a calibrated model; expected the float model"):
        dbg.load_model(path, path)


def test_a_pipe_or_a_device_as_the_model_is_refused_without_waiting(tmp_path: Path) -> None:
    """A pipe can be read once (``<(cat m.onnx)`` read as corrupt) and a FIFO's open waits for a
    writer forever: both are refused before any read."""
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path / "fifo", Path(os.devnull)):
        with pytest.raises(ModelError, match=r"is not a regular file \(a pipe or a device\); expected an \.onnx file on disk"):
            dbg.load_model(path)
