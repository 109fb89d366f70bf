"""Cast round trips (float32 → bfloat16/float16 → float32) are calibration nodes: AMD Quark's BF16
export (``BF16QDQToCast``) simulates bfloat16 that way on every activation and weight.

Checked against a brute force that edits the file itself: the round trips that are off are cut out
(their readers read the float tensor), one session per configuration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import ptqdebug as dbg
from ptqdebug.engine.build import standalone_model
from ptqdebug.engine.engine import Engine
from ptqdebug.errors import ModelError
from tests.support.oracle import oracle_from_file

NARROW = (T.BFLOAT16, T.FLOAT16)


def _tiny(tmp_path: Path, nodes: list[onnx.NodeProto], inputs: tuple[tuple[str, int], ...] = (("x", T.FLOAT),),
          inits: tuple[onnx.TensorProto, ...] = ()) -> Path:
    """A model of ``nodes`` from ``inputs`` (each [1, 4]) to ``y`` (float32 [1, 4]), saved as m.onnx."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, [1, 4]) for n, t in inputs],
                              [helper.make_tensor_value_info("y", T.FLOAT, [1, 4])], list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def _round_trips(float_path: Path, out: Path, trips: dict[str, int], two_readers: str | None = None) -> Path:
    """The float model with a Cast round trip (to the given type and back) on each named tensor;
    on ``two_readers`` the narrow tensor goes back through two Casts, one per reader."""
    model = onnx.load(float_path)
    g = model.graph
    nodes: list[onnx.NodeProto] = []
    for tensor, to in trips.items():
        readers = [(n, i) for n in g.node for i, x in enumerate(n.input) if x == tensor]
        nodes.append(helper.make_node("Cast", [tensor], [f"{tensor}/narrow"], to=to, name=f"rt_{tensor}"))
        backs = len(readers) if tensor == two_readers else 1
        for k in range(backs):
            nodes.append(helper.make_node("Cast", [f"{tensor}/narrow"], [f"{tensor}/back{k}"], to=T.FLOAT, name=f"rt_{tensor}/back{k}"))
        for j, (n, i) in enumerate(readers):
            n.input[i] = f"{tensor}/back{j if backs > 1 else 0}"
    nodes.extend(g.node)
    del g.node[:]
    g.node.extend(nodes)  # (not sorted: the loader orders the graph)
    onnx.save(model, out)
    return out


def _cut(path: Path, enabled: set[str], out: Path) -> Path:
    """``path`` with the round trips not in ``enabled`` removed."""
    model = onnx.load(path)
    g = model.graph
    off = {n.name for n in g.node if n.name.startswith("rt_") and "/back" not in n.name and n.name not in enabled}
    rename: dict[str, str] = {}
    source = {n.output[0]: n.input[0] for n in g.node if n.name in off}
    keep = []
    for n in g.node:
        if n.name in off:
            continue
        if n.op_type == "Cast" and n.input[0] in source:
            rename[n.output[0]] = source[n.input[0]]
            continue
        keep.append(n)
    for n in keep:
        n.input[:] = [rename.get(x, x) for x in n.input]
    del g.node[:]
    g.node.extend(keep)
    onnx.save(model, out)
    return out


@pytest.fixture(scope="module")
def casted(cnn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trips = {"input": T.BFLOAT16, "conv0.weight": T.BFLOAT16, "conv1.weight": T.FLOAT16, "fc.bias": T.BFLOAT16}
    float_model = onnx.load(cnn_dir / "float.onnx")
    relu = [n for n in float_model.graph.node if n.op_type == "Relu"][1]  # read by a Conv and the residual Add
    trips[relu.output[0]] = T.FLOAT16
    return _round_trips(cnn_dir / "float.onnx", tmp_path_factory.mktemp("casts") / "casts.onnx", trips,
                        two_readers=relu.output[0])


def test_round_trips_are_calibration_nodes(casted: Path) -> None:
    model = dbg.load_model(casted)
    got = {q.name: (q.kind, q.qtype) for q in model.quantizers}
    relu = next(n for n in got if n not in ("rt_input", "rt_conv0.weight", "rt_conv1.weight", "rt_fc.bias"))
    assert got == {"rt_input": ("activation", "bfloat16"), "rt_conv0.weight": ("weight", "bfloat16"),
                   "rt_conv1.weight": ("weight", "float16"), "rt_fc.bias": ("weight", "bfloat16"),
                   relu: ("activation", "float16")}
    assert model.source_format == "cast" and model.copies  # the second Cast back is a copy
    # the node reading each round trip counts it as its own
    conv0 = next(n for n in model.proto.graph.node if n.op_type == "Conv")
    assert set(model.node_quantizers[conv0.name]) >= {"rt_input", "rt_conv0.weight"}


def test_runs_match_the_file_with_round_trips_cut(casted: Path, samples: list, tmp_path: Path) -> None:
    model = dbg.load_model(casted)
    names = [q.name for q in model.quantizers]
    configurations = [set(), set(names), *({n} for n in names), set(names[::2]), set(names[1::2])]
    for segments in (None, len(model.proto.graph.node)):
        engine = Engine(model, segments=segments)
        for sample in samples[:2]:
            ref = engine.reference(sample, ["logits"])
            for on in configurations:
                want = oracle_from_file(_cut(casted, on, tmp_path / "cut.onnx"), [], sample, ["logits"])["logits"]
                np.testing.assert_array_equal(engine.run(ref, on, ["logits"])["logits"], want)
    # the weights' values: float, and rounded to their type
    w = numpy_helper.to_array(next(t for t in onnx.load(casted).graph.initializer if t.name == "conv1.weight"))
    floats, rounded = engine.weight_values("rt_conv1.weight")
    assert np.array_equal(floats, w) and np.array_equal(rounded, w.astype(np.float16).astype(np.float32))
    assert not np.array_equal(rounded, w)


def test_sweeps_export_and_runall(casted: Path, cnn_dir: Path, samples: list, tmp_path: Path) -> None:
    model = dbg.load_model(casted)
    exported = standalone_model(model, {"rt_input"})
    casts = [n for n in exported.graph.node if n.op_type == "Cast"]
    assert [n.name for n in casts] == ["rt_input", "rt_input/back0"]
    got = dbg.get_sensitivity_of_nodes(casted, calibrated_data=samples[:1], node_type="activation", cache=False)
    assert set(got) == {q.name for q in model.activation_quantizers}
    run = dbg.runall(casted, cnn_dir / "calibration_data", str(tmp_path / "out") + "/", cache=False)
    assert (tmp_path / "out" / "index.html").is_file() and run.results["model"]["format"] == "cast"


def test_unnamed_round_trips_say_what_they_quantize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Quark leaves its Casts unnamed (844 of YOLOv8n's 850): the names are ptqdebug's, so the notes
    say so and `info` shows each one's tensor (a Conv's weight and bias are otherwise alike)."""
    from ptqdebug.cli import main

    nodes = [helper.make_node("Cast", ["x"], ["xb"], to=T.BFLOAT16), helper.make_node("Cast", ["xb"], ["x32"], to=T.FLOAT),
             helper.make_node("Relu", ["x32"], ["y"], name="relu")]
    _tiny(tmp_path, nodes)
    model = dbg.load_model(tmp_path / "m.onnx")
    assert [q.name for q in model.quantizers] == ["Cast_0"]
    assert "1 calibration node is unnamed in the file (Cast_0): ptqdebug names a node <op type>_<its position in the file>" \
        in " ".join(model.notes)
    assert main(["info", str(tmp_path / "m.onnx")]) == 0
    assert "  Cast_0 (unnamed in the file; quantizes x)  bfloat16 per-tensor -> relu" in capsys.readouterr().out


def test_statistics_of_round_trips_have_no_scale(casted: Path, cnn_dir: Path) -> None:
    """bfloat16 and float16 round each value at its own exponent: no scale or threshold to report
    (the trial's figure drew a flat "Scales = 1" line and a red mark under every node)."""
    from ptqdebug.analyses.stats import calibration_node_stats
    from ptqdebug.plots.stats import stat_info_figure

    stats = calibration_node_stats(dbg.open_context(casted, cnn_dir / "calibration_data", cache=False))
    assert stats and all(s.scales == () and s.thresholds == () and s.max_vals for s in stats)
    ax = stat_info_figure(stats, "weight").axes[0]
    assert sorted(line.get_label() for line in ax.get_lines()) == ["Max_vals", "Min_nz_vals"]
    assert not [c for c in ax.collections if c.get_gid() == "nonfinite"]


def test_a_tensor_computed_in_a_narrow_type_is_not_a_round_trip(tmp_path: Path) -> None:
    """A graph that computes in float16 in places: a Cast to float16 read by a Mul is not
    simulated precision, and a round trip of a float16 tensor (not float32) is no calibration node
    (switched off, its readers would get float16)."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=T.FLOAT16, name="to16"),
             helper.make_node("Mul", ["h", "w"], ["m"], name="mul"),
             helper.make_node("Cast", ["m"], ["mb"], to=T.BFLOAT16, name="tobf16"),
             helper.make_node("Cast", ["mb"], ["y"], to=T.FLOAT, name="back")]
    _tiny(tmp_path, nodes, inits=(numpy_helper.from_array(np.full(4, 0.5, np.float16), "w"),))
    with pytest.raises(ModelError, match="no Cast round trips to a narrower float"):
        dbg.load_model(tmp_path / "m.onnx")


@pytest.mark.parametrize("before", [
    [helper.make_node("Shape", ["x"], ["s"])],  # int64
    [helper.make_node("Cast", ["x"], ["d"], to=T.DOUBLE), helper.make_node("Sqrt", ["d"], ["s"])],  # float64
    [helper.make_node("Relu", ["h"], ["s"])],  # a float16 graph input
], ids=["int64", "float64", "float16-input"])
def test_a_round_trip_of_a_tensor_that_is_not_float32_is_left_alone(before: list[onnx.NodeProto], tmp_path: Path) -> None:
    """Switched off, such a round trip would hand its readers another type than float32: ONNX
    type inference tells (found by review: all three were taken for calibration nodes and the
    first run failed)."""
    nodes = [*before,
             helper.make_node("Cast", ["s"], ["s16"], to=T.FLOAT16, name="odd"),
             helper.make_node("Cast", ["s16"], ["s32"], to=T.FLOAT, name="odd_back"),
             helper.make_node("Cast", ["x"], ["xb"], to=T.BFLOAT16, name="fine"),
             helper.make_node("Cast", ["xb"], ["x32"], to=T.FLOAT, name="fine_back"),
             helper.make_node("ReduceSum", ["s32"], ["r"], keepdims=0, name="sum"),
             helper.make_node("Mul", ["x32", "r"], ["y"], name="mul")]
    _tiny(tmp_path, nodes, inputs=(("x", T.FLOAT), ("h", T.FLOAT16)))
    model = dbg.load_model(tmp_path / "m.onnx")
    assert [q.name for q in model.quantizers] == ["fine"]
    sample = {"x": np.ones((1, 4), np.float32), "h": np.ones((1, 4), np.float16)}
    engine = Engine(model)
    ref = engine.reference(sample, ["y"])
    np.testing.assert_array_equal(engine.run(ref, {"fine"}, ["y"])["y"], oracle_from_file(tmp_path / "m.onnx", [], sample, ["y"])["y"])


def test_no_cut_leaves_a_bfloat16_value_between_segments(tmp_path: Path) -> None:
    """ONNX Runtime cannot hand a bfloat16 tensor to numpy, so a value the graph computes with in
    bfloat16 (not a round trip: a node reads it) must stay inside one segment, however finely the
    graph is cut (found by the Quark BF16 trial: a traceback from every command that runs data)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["rb"], to=T.BFLOAT16, name="rt_r"),
             helper.make_node("Cast", ["rb"], ["r32"], to=T.FLOAT, name="rt_r/back0"),
             helper.make_node("Cast", ["x"], ["xb"], to=T.BFLOAT16, name="narrow"),
             helper.make_node("Identity", ["xb"], ["xb2"], name="bf16_identity"),
             helper.make_node("Neg", ["r32"], ["n"], name="neg"),
             helper.make_node("Cast", ["xb2"], ["x32"], to=T.FLOAT, name="wide"),
             helper.make_node("Add", ["n", "x32"], ["y"], name="add")]
    _tiny(tmp_path, nodes)
    model = dbg.load_model(tmp_path / "m.onnx")
    assert [q.name for q in model.quantizers] == ["rt_r"]
    sample = {"x": np.linspace(-2, 2, 4, dtype=np.float32).reshape(1, 4) + np.float32(1e-3)}
    engine = Engine(model, segments=len(model.proto.graph.node))
    assert len(engine.plan.segments) > 1
    ref = engine.reference(sample, ["y"])
    for on in ([], ["rt_r"]):
        want = oracle_from_file(tmp_path / "m.onnx" if on else _cut(tmp_path / "m.onnx", set(), tmp_path / "cut.onnx"), [], sample, ["y"])
        np.testing.assert_array_equal(engine.run(ref, on, ["y"])["y"], want["y"])
