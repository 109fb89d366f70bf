"""Fuzzing: small QDQ models and data folders, mutated at random, must give a correct result or a
:class:`PtqDebugError` — never any other exception.

Model mutations: drop a node, rename a node (to a taken name, an empty one, odd text), re-wire an
input or an output, change an initializer's dtype, add or remove attributes, change an op type,
the input's dtype or shape, the opset, and truncate or flip bytes of the file. Data mutations:
wrong shape, dtype or rank, NaN/inf, stray files, a renamed or emptied input folder, pickles.
A successful result is checked against the brute-force oracle (one model and session per
candidate, ``tests/support/oracle.py``).

Examples are derandomized so the suite is reproducible; ``PTQDEBUG_FUZZ_EXAMPLES=2000`` runs a
longer, random campaign.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.errors import PtqDebugError
from ptqdebug.metrics import METRICS, compare
from tests.reliability.models import qdq_text_model, text_samples, write_folder
from tests.support.horizon import hz_twin
from tests.support.oracle import oracle_from_model

EXAMPLES = int(os.environ.get("PTQDEBUG_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 300, deadline=None, derandomize=not EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]
OPS = ["Relu", "Identity", "QuantizeLinear", "DequantizeLinear", "Add", "Conv", "Foo", "Shape", "Cast"]
NAMES = ["", "Conv_4", "Q_0", "a/b", "../../x", "名字", "x" * 300, "with space", "a:b"]
ELEM_TYPES = [onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8,
              onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.STRING]


def _mutate_model(draw: st.DrawFn, model: onnx.ModelProto) -> bytes:
    g = model.graph
    tensors = sorted({t for n in g.node for t in [*n.input, *n.output] if t} | {i.name for i in g.initializer})
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["drop", "rename", "input", "output", "dtype", "attribute", "op", "in_type",
                                     "in_shape", "opset", "hz_attribute", "nothing"]))
        nodes = list(g.node)
        if kind == "drop" and nodes:
            del g.node[draw(st.integers(0, len(nodes) - 1))]
        elif kind == "rename" and nodes:
            nodes[draw(st.integers(0, len(nodes) - 1))].name = draw(st.sampled_from(NAMES))
        elif kind == "input" and nodes:
            n = nodes[draw(st.integers(0, len(nodes) - 1))]
            if n.input:
                n.input[draw(st.integers(0, len(n.input) - 1))] = draw(st.sampled_from([*tensors, "missing", ""]))
        elif kind == "output" and nodes:
            n = nodes[draw(st.integers(0, len(nodes) - 1))]
            n.output[0] = draw(st.sampled_from([*tensors, "fresh"]))
        elif kind == "dtype" and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            arr = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(arr.astype(draw(st.sampled_from(DTYPES))), t.name))
        elif kind == "attribute" and nodes:
            n = nodes[draw(st.integers(0, len(nodes) - 1))]
            if draw(st.booleans()):
                del n.attribute[:]
            else:
                n.attribute.append(onnx.helper.make_attribute(draw(st.sampled_from(["axis", "group", "saturate", "block_size"])),
                                                              draw(st.integers(-4, 4))))
        elif kind == "hz_attribute" and nodes:
            n = nodes[draw(st.integers(0, len(nodes) - 1))]
            name = draw(st.sampled_from(["thresholds", "qtype", "switch", "constant", "bits", "axis"]))
            value = draw(st.sampled_from([[], [-1.0], [float("nan")], [0.0], [1e30, 2.0, 3.0], "int3", "float16", "MAYBE", "",
                                          0, 99, -3]))
            kept = [a for a in n.attribute if a.name != name]
            del n.attribute[:]
            n.attribute.extend(kept)
            if not (isinstance(value, list) and not value):
                n.attribute.append(onnx.helper.make_attribute(name, value))
        elif kind == "op" and nodes:
            nodes[draw(st.integers(0, len(nodes) - 1))].op_type = draw(st.sampled_from(OPS))
        elif kind == "in_type":
            g.input[0].type.tensor_type.elem_type = draw(st.sampled_from(ELEM_TYPES))
        elif kind == "in_shape":
            dims = draw(st.lists(st.one_of(st.integers(0, 5), st.just("N")), min_size=0, max_size=5))
            shape = g.input[0].type.tensor_type.shape
            del shape.dim[:]
            for d in dims:
                dim = shape.dim.add()
                if isinstance(d, str):
                    dim.dim_param = d
                else:
                    dim.dim_value = d
        elif kind == "opset":
            model.opset_import[0].version = draw(st.sampled_from([7, 10, 11, 13, 19, 21, onnx.defs.onnx_opset_version()]))
    raw = model.SerializeToString()
    cut = draw(st.sampled_from(["whole"] * 6 + ["truncate", "flip"]))
    if cut == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif cut == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    return raw


def _mutate_data(draw: st.DrawFn, root: Path) -> None:
    samples = text_samples(draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(0, 1))):
        i = draw(st.integers(0, len(samples) - 1))
        x = samples[i]["x"]
        kind = draw(st.sampled_from(["shape", "dtype", "rank", "nan", "inf", "nothing"]))
        if kind == "shape":
            samples[i]["x"] = np.zeros(draw(st.tuples(*[st.integers(1, 5)] * 4)), np.float32)
        elif kind == "dtype":
            samples[i]["x"] = x.astype(draw(st.sampled_from(DTYPES)))
        elif kind == "rank":
            samples[i]["x"] = x.reshape(-1) if draw(st.booleans()) else x[None]
        elif kind in ("nan", "inf"):
            x = x.copy()
            x.flat[draw(st.integers(0, x.size - 1))] = np.nan if kind == "nan" else np.inf
            samples[i]["x"] = x
    write_folder(root, samples)
    for _ in range(draw(st.integers(0, 1))):
        kind = draw(st.sampled_from(["stray_root", "stray_input", "rename_folder", "drop_file", "pickle", "empty"]))
        if kind == "stray_root":
            (root / "notes.txt").write_text("x")
        elif kind == "stray_input":
            (root / "x" / "readme.md").write_text("x")
        elif kind == "rename_folder":
            (root / "x").rename(root / "input_0")
        elif kind == "drop_file":
            (root / "x" / "0.npy").unlink()
        elif kind == "pickle":
            (root / "x" / "0.npy").write_bytes(pickle.dumps({"x": 1}))
        elif kind == "empty":
            shutil.rmtree(root / "x")


def _check_result(path: Path, data: Path, result: dict[str, dict[str, float]], node_type: str) -> None:
    """A successful sweep agrees with the brute force: one model and session per candidate."""
    cm = dbg.load_model(path)
    samples = [s for s in dbg.load_data(str(data), cm.inputs)]
    m = METRICS["cosine-similarity"]
    cands = {c.name: c.quantizers for c in candidates_for(cm, node_type)}
    assert set(result) == set(cands)
    for name, qs in cands.items():
        per_output = []
        for o in cm.outputs:
            vals = [compare([m], oracle_from_model(cm, (), s)[o], oracle_from_model(cm, qs, s)[o])[0] for s in samples]
            per_output.append(float(np.mean(vals)))
        want, got = float(np.mean(per_output)), result[name]["cosine-similarity"]
        assert (math.isnan(want) and math.isnan(got)) or abs(want - got) < 1e-5, (name, want, got)


@st.composite
def mutated_model(draw: st.DrawFn) -> bytes:
    """A mutated QDQ model, or its twin with ``HzCalibration`` nodes (the original toolchain's format)."""
    base = qdq_text_model()
    if draw(st.booleans()):
        base = hz_twin(base)[0]
    return _mutate_model(draw, base)


@st.composite
def mutated_data(draw: st.DrawFn, root: Path) -> Path:
    _mutate_data(draw, root)
    return root


@FUZZ
@given(model=mutated_model(), node_type=st.sampled_from(["node", "weight", "activation"]), data=st.data())
def test_mutated_models_and_data_give_a_result_or_a_user_error(model: bytes, node_type: str, data: st.DataObject,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    path = work / "model.onnx"
    path.write_bytes(model)
    folder = data.draw(mutated_data(work / "data"), label="data")
    try:
        result = dbg.get_sensitivity_of_nodes(str(path), calibrated_data=str(folder), node_type=node_type, data_num=None,
                                              cache=False)
    except PtqDebugError as exc:
        assert str(exc) and "\n" not in str(exc)
        event(type(exc).__name__)
        return
    event("result")
    _check_result(path, folder, result, node_type)


@FUZZ
@given(model=mutated_model())
def test_mutated_models_load_or_give_a_user_error(model: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The loader alone (what ``ptqdebug info`` runs), on the same mutations."""
    path = tmp_path_factory.mktemp("fuzzload") / "m.onnx"
    path.write_bytes(model)
    try:
        loaded = dbg.load_model(path)
    except PtqDebugError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert loaded.quantizers and len({q.name for q in loaded.quantizers}) == len(loaded.quantizers)
