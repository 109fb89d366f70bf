"""The bad-input matrix: every broken model, data folder and option, through every command and API
function. Each must end as one line (what was found, what was expected, how to fix it), exit
status 2 from the CLI, a :class:`PtqDebugError` subclass from the API, and no output at all:
``save_dir`` is not even created.

The table below is the source of ``docs/reliability.md``'s matrix; a case names its commands, the
exception class the API raises and a regular expression the one-line message must match.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.cli import main
from ptqdebug.errors import (
    DataError,
    ModelError,
    OptionError,
    PtqDebugError,
    UnknownNodeError,
    UnsupportedOpError,
)
from tests.reliability.models import two_input_float, two_input_samples
from tests.support.builders import quantize_qdq

ANALYSES = ["get-sensitivity-of-nodes", "plot-acc-error", "plot-distribution", "get-channelwise-data-distribution",
            "sensitivity-analysis", "get-calibration-nodes-stat-info", "runall"]
ALL = [*ANALYSES, "info"]

#: What each command needs besides the model and the data to run at all.
BASE_CLI = {"plot-acc-error": ["-q", "[weight,activation]"], "plot-distribution": ["-n", "[Conv_0]"],
            "get-channelwise-data-distribution": ["-n", "[Conv_0]"]}
SAVE_FLAG = {"sensitivity-analysis": "-sd", "info": None}


def call_api(cmd: str, model: object, data: object, save_dir: Path, **kw: Any) -> object:
    """The API function behind a CLI command, with the same defaults the CLI rows use."""
    if cmd == "get-sensitivity-of-nodes":
        return dbg.get_sensitivity_of_nodes(model, calibrated_data=data, save_dir=save_dir, **kw)
    if cmd == "plot-acc-error":
        return dbg.plot_acc_error(data, model, **{"quantize_node": ["weight", "activation"], **kw}, save_dir=save_dir)
    if cmd == "plot-distribution":
        return dbg.plot_distribution(model, data, **{"nodes_list": ["Conv_0"], **kw}, save_dir=save_dir)
    if cmd == "get-channelwise-data-distribution":
        return dbg.get_channelwise_data_distribution(model, data, **{"nodes_list": ["Conv_0"], **kw}, save_dir=save_dir)
    if cmd == "sensitivity-analysis":
        return dbg.sensitivity_analysis(model, data, **kw, save_dir=save_dir)
    if cmd == "get-calibration-nodes-stat-info":
        return dbg.get_calibration_nodes_stat_info(model, data, **kw, save_dir=save_dir)
    if cmd == "runall":
        return dbg.runall(model, data, save_dir, **kw)
    if cmd == "info":
        return dbg.load_model(model)
    raise AssertionError(cmd)


@dataclass
class Case:
    """One row of the matrix. ``model``/``data`` name entries of the ``world`` fixture (None: the
    good ones); ``cli``/``api`` hold extra arguments per command (key ``"*"``: every command)."""

    id: str
    cmds: list[str]
    error: type[PtqDebugError]
    match: str
    model: str | None = None
    data: str | None = None
    cli: dict[str, list[str]] = field(default_factory=dict)
    api: dict[str, dict[str, Any]] = field(default_factory=dict)
    save_dir: str | None = None  # a world entry used as save_dir
    skip_root: bool = False
    base: bool = True  # False: leave out the arguments a command needs (to test that they are required)

    def cli_args(self, cmd: str) -> list[str]:
        return [*(BASE_CLI.get(cmd, []) if self.base else []), *self.cli.get("*", []), *self.cli.get(cmd, [])]

    def api_kwargs(self, cmd: str) -> dict[str, Any]:
        return {**self.api.get("*", {}), **self.api.get(cmd, {})}


def _per(cmds: dict[str, str], value: str) -> dict[str, list[str]]:
    return {cmd: [flag, value] for cmd, flag in cmds.items()}


# ---------------------------------------------------------------------------------------------
#: Every list option that takes node names: (command, CLI flag, API argument).
NODE_LIST_OPTIONS = [
    ("get-sensitivity-of-nodes", "-i", "interested_nodes"), ("get-sensitivity-of-nodes", "-o", "output_node"),
    ("plot-acc-error", "-q", "quantize_node"), ("plot-acc-error", "-nq", "non_quantize_node"),
    ("plot-distribution", "-n", "nodes_list"), ("get-channelwise-data-distribution", "-n", "nodes_list"),
    ("sensitivity-analysis", "-sn", "sensitive_nodes"), ("get-calibration-nodes-stat-info", "-n", "nodes_list"),
    ("runall", "-o", "output_node"), ("runall", "-i", "interested_nodes"), ("runall", "-dnl", "dis_nodes_list"),
    ("runall", "-cn", "cw_nodes_list"), ("runall", "-qn", "quantize_node"), ("runall", "-nqn", "non_quantize_node"),
    ("runall", "-sn", "sensitive_nodes"),
]

CASES: list[Case] = [
    # -- the model file --------------------------------------------------------------------
    Case("model-missing", ALL, ModelError, r"calibrated model file '.*nope\.onnx' does not exist; check the path", model="missing"),
    Case("model-is-a-folder", ALL, ModelError, r"is a folder; expected an \.onnx file", model="folder"),
    Case("model-empty-file", ALL, ModelError, r"is empty \(0 bytes\); expected an \.onnx model file", model="empty"),
    Case("model-truncated", ALL, ModelError, r"could not be read as ONNX \(.*\); expected a valid \.onnx model file", model="truncated"),
    Case("model-not-onnx", ALL, ModelError, r"holds text, not a binary ONNX model", model="text"),
    Case("model-unreadable", ALL, ModelError, r"cannot be read \(Permission denied\)", model="unreadable", skip_root=True),
    Case("model-fails-checker", ALL, ModelError, r"is not a valid ONNX model \(No Op registered for Foo.*\); expected a model that passes onnx\.checker", model="checker"),
    Case("model-cycle", ALL, ModelError, r"the graph has a cycle through node '[^']+'; expected an acyclic ONNX graph", model="cycle"),
    Case("model-dangling-input", ALL, ModelError, r"node 'Conv_1' reads tensor 'dangling', which no node, input or initializer provides", model="dangling"),
    Case("model-dangling-output", ALL, ModelError, r"lists graph output 'ghost', which no node produces", model="ghost"),
    Case("model-duplicate-names", ALL, ModelError, r"two nodes are named 'Conv_0' .* rename one of them", model="duplicate"),
    Case("model-no-calibration-nodes", ALL, ModelError, r"no calibration nodes .* run `ptqdebug calibrate", model="float"),
    Case("model-vendor-op", ALL, UnsupportedOpError, r"custom operators plain ONNX Runtime cannot run: com\.vendor::VendorConv", model="vendor"),
    Case("model-horizon-op", ALL, UnsupportedOpError, r"horizon operators HzQuantizedConv that have no public definition", model="horizon"),
    Case("model-external-data-missing", ALL, ModelError, r"external data file 'weights\.bin', which is not there", model="external_missing"),
    Case("model-fails-in-onnxruntime", ANALYSES, ModelError, r"ONNX Runtime cannot run the (float )?model", model="runtime"),
    # -- the calibration data ------------------------------------------------------------
    Case("data-missing", ANALYSES, DataError, r"calibration data '.*nodata' does not exist", data="missing"),
    Case("data-empty-folder", ANALYSES, DataError, r"calibration data folder '.*' is empty; expected one folder per model input", data="empty"),
    Case("data-stray-file", ANALYSES, DataError, r"contains the file 'README\.txt'; expected only one folder per model input", data="stray_root"),
    Case("data-stray-file-in-input-folder", ANALYSES, DataError, r"contains 'notes\.txt'; expected only \.npy files", data="stray_input"),
    Case("data-folder-name-mismatch", ANALYSES, DataError, r"has folders 'images'; the model inputs are 'input': name one folder after each input", data="mismatch"),
    Case("data-extra-folder", ANALYSES, DataError, r"has folders 'input', 'other'; the model inputs are 'input'", data="extra_folder"),
    Case("data-unequal-sample-counts", ANALYSES, DataError, r"different file names per input \('2.npy' only in 'a'\)", model="two_inputs", data="unequal"),
    Case("data-wrong-dtype", ANALYSES, DataError, r"input 'input' has dtype float64, the model expects float32; convert it with \.astype\(np\.float32\)", data="dtype"),
    Case("data-integer-dtype", ANALYSES, DataError, r"input 'input' has dtype int64, the model expects float32", data="int_dtype"),
    Case("data-wrong-shape", ANALYSES, DataError, r"input 'input' has shape \[1, 3, 8, 8\], the model expects float32\[N, 3, 16, 16\]", data="shape"),
    Case("data-wrong-rank", ANALYSES, DataError, r"input 'input' has shape \[3, 16, 16\], the model expects float32\[N, 3, 16, 16\]", data="rank"),
    Case("data-zero-size", ANALYSES, DataError, r"has shape \[0, 3, 16, 16\], which holds no values", data="zero"),
    Case("data-nan", ANALYSES, DataError, r"sample 0 of .*: input 'input' contains NaN values; expected finite numbers", data="nan"),
    Case("data-inf", ANALYSES, DataError, r"sample 0 of .*: input 'input' contains inf values; expected finite numbers", data="inf"),
    Case("data-nan-in-a-later-sample", ["get-sensitivity-of-nodes", "sensitivity-analysis", "get-calibration-nodes-stat-info", "runall"],
         DataError, r"sample 3 of .*: input 'input' contains NaN values", data="nan_late",
         cli={"get-sensitivity-of-nodes": ["-d", "all"], "sensitivity-analysis": ["-d", "all"], "runall": ["-dn", "all"]},
         api={"*": {"data_num": None}}),
    Case("data-pickled-npy", ANALYSES, DataError, r"holds a pickled object array, which ptqdebug refuses to load \(allow_pickle=False\)", data="pickled"),
    Case("data-pickle-named-npy", ANALYSES, DataError, r"holds a pickled object array", data="raw_pickle"),
    Case("data-npy-not-numpy", ANALYSES, DataError, r"is not an \.npy file \(it starts with b'garbag'\)", data="garbage_npy"),
    Case("data-npy-truncated", ANALYSES, DataError, r"is not a readable \.npy file", data="truncated_npy"),
    Case("data-npz-wrong-keys", ANALYSES, DataError, r"holds arrays 'images'; expected one per model input: 'input'", data="npz_keys"),
    Case("data-npz-not-zip", ANALYSES, DataError, r"is not an \.npz file", data="npz_garbage"),
    Case("data-npz-pickled", ANALYSES, DataError, r"holds pickled object arrays, which ptqdebug refuses to load", data="npz_pickled"),
    Case("data-unsupported-file", ANALYSES, DataError, r"is a \.txt file; expected a folder, an \.npz or an \.npy file", data="txt"),
    Case("data-no-npy-files", ANALYSES, DataError, r"holds no \.npy files", data="no_npy"),
    # -- node names in every list option --------------------------------------------------
    *[Case(f"unknown-node-{cmd}-{flag}", [cmd], UnknownNodeError, rf"{what}: 'Nope_1' is not in the model",
           cli={cmd: [flag, "[Nope_1]"]}, api={cmd: {what: ["Nope_1"]}})
      for cmd, flag, what in NODE_LIST_OPTIONS],
    Case("unknown-node-in-a-group", ["get-sensitivity-of-nodes"], UnknownNodeError, r"interested_nodes: 'Nope' is not in the model",
         cli={"*": ["-i", "[[Conv_0],[Nope]]"]}, api={"*": {"interested_nodes": [["Conv_0"], ["Nope"]]}}),
    Case("node-without-calibration-nodes", ["get-sensitivity-of-nodes", "plot-acc-error"], OptionError,
         r"'conv0\.bias_DequantizeLinear' \(DequantizeLinear\) has no calibration node on its inputs",
         cli={"get-sensitivity-of-nodes": ["-i", "[conv0.bias_DequantizeLinear]"], "plot-acc-error": ["-q", "[conv0.bias_DequantizeLinear]"]},
         api={"get-sensitivity-of-nodes": {"interested_nodes": ["conv0.bias_DequantizeLinear"]},
              "plot-acc-error": {"quantize_node": ["conv0.bias_DequantizeLinear"]}}),
    Case("keywords-mixed-with-names", ["plot-acc-error", "runall"], OptionError, r"quantize_node mixes 'weight' with node names \('Conv_0'\)",
         cli={"plot-acc-error": ["-q", "[weight,Conv_0]"], "runall": ["-qn", "[weight,Conv_0]"]},
         api={"*": {"quantize_node": ["weight", "Conv_0"]}}),
    Case("keyword-in-non-quantize-node", ["plot-acc-error", "runall"], OptionError, r"non_quantize_node cannot be 'weight' or 'activation'",
         cli={"plot-acc-error": ["-nq", "[weight]"], "runall": ["-nqn", "[weight]"]}, api={"*": {"non_quantize_node": ["weight"]}}),
    # -- list syntax (CLI) and list shapes (API) -------------------------------------------
    *[Case(f"malformed-list-{cmd}-{flag}", [cmd], OptionError, r"unclosed '\['|is a int",
           cli={cmd: [flag, "[[Conv_0,Conv_1]"]}, api={cmd: {what: 5}})
      for cmd, flag, what in NODE_LIST_OPTIONS],
    Case("malformed-list-runall-node-type", ["runall"], OptionError, r"unclosed '\['|node_type 5 is not valid",
         cli={"*": ["-nt", "[[node]"]}, api={"*": {"node_type": 5}}),
    Case("malformed-list-runall-metrics", ["runall"], OptionError, r"unclosed '\['|ns_metrics is 5; expected a metric name",
         cli={"*": ["-nm", "[mse"]}, api={"*": {"ns_metrics": 5}}),
    Case("list-stray-bracket", ["plot-distribution"], OptionError, r"has a '\]' without an opening '\['|contains an empty group",
         cli={"*": ["-n", "Conv_0]"]}, api={"*": {"nodes_list": [["Conv_0"], []]}}),
    Case("list-text-after-list", ["plot-distribution"], OptionError, r"unexpected 'x' after the list|contains \[\['Conv_0'\]\]",
         cli={"*": ["-n", "[Conv_0]x"]}, api={"*": {"nodes_list": [[["Conv_0"]]]}}),
    Case("empty-list", ["get-sensitivity-of-nodes", "plot-distribution", "runall"], OptionError,
         r"empty; give at least one name|contains an empty group \[\]",
         cli={"get-sensitivity-of-nodes": ["-i", "[]"], "plot-distribution": ["-n", "[]"], "runall": ["-cn", "[]"]},
         api={"get-sensitivity-of-nodes": {"interested_nodes": [[]]}, "plot-distribution": {"nodes_list": [[]]},
              "runall": {"cw_nodes_list": [[]]}}),
    Case("nodes-list-missing", ["plot-distribution", "get-channelwise-data-distribution"], OptionError,
         r"the following arguments are required: -n/--nodes_list|nodes_list is required",
         api={"*": {"nodes_list": None}}, base=False),
    # -- metrics and node types --------------------------------------------------------------
    *[Case(f"unknown-metric-{cmd}-{flag}", [cmd], OptionError, r"unknown metric 'kl'; expected one of cosine-similarity, mse",
           cli={cmd: [flag, "kl"]}, api={cmd: {what: "kl"}})
      for cmd, flag, what in [("get-sensitivity-of-nodes", "-m", "metrics"), ("plot-acc-error", "-m", "metric"),
                              ("sensitivity-analysis", "-m", "metric"), ("runall", "-nm", "ns_metrics"), ("runall", "-am", "ae_metric")]],
    Case("unknown-metric-in-a-list", ["get-sensitivity-of-nodes"], OptionError, r"unknown metric 'kl'",
         cli={"*": ["-m", "[cosine-similarity,kl]"]}, api={"*": {"metrics": ["cosine-similarity", "kl"]}}),
    Case("metric-not-a-name", ["get-sensitivity-of-nodes", "plot-acc-error"], OptionError, r"metrics? is 5; expected|unknown metric '5'",
         cli={"get-sensitivity-of-nodes": ["-m", "5"], "plot-acc-error": ["-m", "5"]},
         api={"get-sensitivity-of-nodes": {"metrics": 5}, "plot-acc-error": {"metric": 5}}),
    Case("unknown-node-type", ["get-sensitivity-of-nodes", "runall"], OptionError, r"invalid choice: 'tea'|node_type .*'tea'",
         cli={"get-sensitivity-of-nodes": ["-n", "tea"], "runall": ["-nt", "[tea]"]}, api={"*": {"node_type": "tea"}}),
    # -- numbers ---------------------------------------------------------------------------
    *[Case(f"data-num-{label}-{cmd}", [cmd], OptionError, message,
           cli={cmd: ["-dn" if cmd == "runall" else "-d", text]}, api={cmd: {"data_num": value}})
      for cmd in ["get-sensitivity-of-nodes", "sensitivity-analysis", "get-calibration-nodes-stat-info", "runall"]
      for label, text, value, message in [
          ("zero", "0", 0, r"data_num is 0; expected at least 1"),
          ("negative", "-2", -2, r"data_num is -2; expected at least 1"),
          ("too-large", "7", 7, r"there are only 6 samples in .*, but data_num is 7; use at most 6"),
          ("not-a-number", "abc", "abc", r"'abc' is not a whole number|data_num is 'abc'; expected a positive whole number"),
          ("fraction", "1.5", 1.5, r"'1\.5' is not a whole number|data_num is 1\.5")]],
    Case("axis-out-of-range", ["get-channelwise-data-distribution", "runall"], OptionError, r"axis 9 is out of range for",
         cli={"get-channelwise-data-distribution": ["-a", "9"], "runall": ["-a", "9"]}, api={"*": {"axis": 9}}),
    Case("axis-not-a-number", ["get-channelwise-data-distribution"], OptionError, r"invalid int value: 'x'|axis is 'x'",
         cli={"*": ["-a", "x"]}, api={"*": {"axis": "x"}}),
    Case("pick-threshold-nan", ["sensitivity-analysis", "runall"], OptionError, r"pick_threshold is nan; expected a number",
         cli={"sensitivity-analysis": ["-p", "nan"], "runall": ["-pt", "nan"]}, api={"*": {"pick_threshold": float("nan")}}),
    Case("pick-threshold-above-1", ["sensitivity-analysis", "runall"], OptionError,
         r"pick_threshold is 2.0, outside the cosine similarity's range \[-1, 1\]",
         # (sensitivity-analysis takes runall's -pt too; the nan case above spells it -p)
         cli={"sensitivity-analysis": ["-pt", "2"], "runall": ["-pt", "2"]}, api={"*": {"pick_threshold": 2.0}}),
    Case("provider-unknown", ["get-sensitivity-of-nodes", "runall"], OptionError, r"execution provider FooExecutionProvider is not available",
         cli={"*": ["--providers", "FooExecutionProvider"]}, api={"*": {"providers": "FooExecutionProvider"}}),
    # -- save_dir ------------------------------------------------------------------------------
    Case("save-dir-is-a-file", ANALYSES, OptionError, r"save_dir '.*afile' is a file; expected a folder", save_dir="file"),
    Case("save-dir-under-a-file", ANALYSES, OptionError, r"cannot be created: '.*afile' is a file", save_dir="under_file"),
    Case("save-dir-not-writable", ANALYSES, OptionError, r"is not writable|cannot be created: .* is not writable", save_dir="readonly",
         skip_root=True),
    Case("save-dir-inside-the-data", ANALYSES, OptionError, r"is inside the calibration data folder", save_dir="inside_data"),
]


@pytest.fixture(scope="module")
def world(cnn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every broken model, data folder and save_dir the cases name, each one change from a good one."""
    d = tmp_path_factory.mktemp("bad")
    good_model, good_data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    w: dict[str, Path] = {"good_model": good_model, "good_data": good_data}
    proto = onnx.load(good_model)
    sample = np.load(good_data / "input" / "0.npy")

    def model(name: str, edit: Callable[[onnx.ModelProto], None] | None = None, raw: bytes | None = None) -> None:
        path = d / f"{name}.onnx"
        if raw is not None:
            path.write_bytes(raw)
        else:
            m = onnx.ModelProto()
            m.CopyFrom(proto)
            edit(m)  # type: ignore[misc]
            onnx.save(m, path)
        w[name] = path

    def node(m: onnx.ModelProto, name: str) -> onnx.NodeProto:
        return next(n for n in m.graph.node if n.name == name)

    w["missing"] = d / "nope.onnx"
    (d / "folder.onnx").mkdir()
    w["folder"] = d / "folder.onnx"
    model("empty", raw=b"")
    model("truncated", raw=good_model.read_bytes()[: good_model.stat().st_size // 2])
    model("text", raw=b'<ir_version: 8, opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) { y = Relu (x) }\n')
    model("unreadable", raw=good_model.read_bytes())
    os.chmod(w["unreadable"], 0)
    model("checker", lambda m: setattr(node(m, "Conv_1"), "op_type", "Foo"))
    model("cycle", lambda m: node(m, "Conv_0").input.__setitem__(0, node(m, "Conv_1").output[0]))
    model("dangling", lambda m: node(m, "Conv_1").input.__setitem__(0, "dangling"))
    model("ghost", lambda m: m.graph.output.append(onnx.helper.make_tensor_value_info("ghost", onnx.TensorProto.FLOAT, [1])))
    model("duplicate", lambda m: setattr(node(m, "Conv_1"), "name", "Conv_0"))

    def vendor(m: onnx.ModelProto) -> None:
        n = node(m, "Conv_1")
        n.domain, n.op_type = "com.vendor", "VendorConv"
        m.opset_import.append(onnx.helper.make_opsetid("com.vendor", 1))
    model("vendor", vendor)

    def horizon(m: onnx.ModelProto) -> None:
        n = node(m, "Conv_1")
        n.domain, n.op_type = "horizon", "HzQuantizedConv"
        m.opset_import.append(onnx.helper.make_opsetid("horizon", 1))
    model("horizon", horizon)

    def runtime(m: onnx.ModelProto) -> None:  # passes the checker, but Flatten_0 becomes an impossible Reshape
        n = node(m, "Flatten_0")
        n.op_type = "Reshape"
        del n.attribute[:]
        n.input.append("bad_shape")
        m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([7, -1], np.int64), "bad_shape"))
    model("runtime", runtime)

    w["float"] = cnn_dir / "float.onnx"

    (d / "ext").mkdir()
    onnx.save(proto, d / "ext" / "model.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
    (d / "ext" / "weights.bin").unlink()
    w["external_missing"] = d / "ext" / "model.onnx"

    two = d / "two"
    two.mkdir()
    onnx.save(two_input_float(), two / "float.onnx")
    quantize_qdq(two / "float.onnx", two / "model.onnx", two_input_samples(2))
    w["two_inputs"] = two / "model.onnx"

    def data(name: str, files: dict[str, object]) -> None:
        root = d / f"data_{name}"
        root.mkdir()
        for rel, value in files.items():
            f = root / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, bytes):
                f.write_bytes(value)
            elif isinstance(value, str):
                f.write_text(value)
            else:
                np.save(f, value)
        w[f"data:{name}"] = root

    w["data:missing"] = d / "nodata"
    data("empty", {})
    data("stray_root", {"input/0.npy": sample, "README.txt": "notes"})
    data("stray_input", {"input/0.npy": sample, "input/notes.txt": "notes"})
    data("mismatch", {"images/0.npy": sample})
    data("extra_folder", {"input/0.npy": sample, "other/0.npy": sample})
    two_samples = two_input_samples(3)
    data("unequal", {**{f"a/{i}.npy": s["a"] for i, s in enumerate(two_samples)},
                     **{f"b/{i}.npy": s["b"] for i, s in enumerate(two_samples[:2])}})
    data("dtype", {"input/0.npy": sample.astype(np.float64)})
    data("int_dtype", {"input/0.npy": sample.astype(np.int64)})
    data("shape", {"input/0.npy": sample[:, :, :8, :8]})
    data("rank", {"input/0.npy": sample[0]})
    data("zero", {"input/0.npy": sample[:0]})
    nan, inf = sample.copy(), sample.copy()
    nan[0, 1, 2, 3], inf[0, 0, 0, 0] = np.nan, -np.inf
    data("nan", {"input/0.npy": nan})
    data("inf", {"input/0.npy": inf})
    data("nan_late", {**{f"input/{i}.npy": sample for i in range(3)}, "input/3.npy": nan, "input/4.npy": sample, "input/5.npy": sample})
    data("pickled", {"input/0.npy": sample})
    with open(w["data:pickled"] / "input" / "0.npy", "wb") as f:
        np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import pickle

    data("raw_pickle", {"input/0.npy": pickle.dumps(sample)})
    data("garbage_npy", {"input/0.npy": b"garbage, not an array"})
    data("truncated_npy", {"input/0.npy": sample})
    raw = (w["data:truncated_npy"] / "input" / "0.npy").read_bytes()
    (w["data:truncated_npy"] / "input" / "0.npy").write_bytes(raw[: len(raw) // 2])
    np.savez(d / "wrong_keys.npz", images=np.stack([sample, sample]))
    w["data:npz_keys"] = d / "wrong_keys.npz"
    (d / "garbage.npz").write_bytes(b"PK not really a zip file")
    w["data:npz_garbage"] = d / "garbage.npz"
    np.savez(d / "pickled.npz", input=np.array([{"a": 1}], dtype=object))
    w["data:npz_pickled"] = d / "pickled.npz"
    (d / "data.txt").write_text("1 2 3")
    w["data:txt"] = d / "data.txt"
    data("no_npy", {"input/.keep": "x"})

    (d / "afile").write_text("not a folder")
    w["file"] = d / "afile"
    w["under_file"] = d / "afile" / "sub"
    (d / "readonly").mkdir()
    os.chmod(d / "readonly", 0o555)
    w["readonly"] = d / "readonly" / "out"
    w["inside_data"] = good_data / "results"
    yield w
    os.chmod(d / "readonly", 0o755)
    os.chmod(w["unreadable"], 0o644)


def _expand(cases: list[Case]) -> list[Any]:
    out = []
    for case in cases:
        for cmd in case.cmds:
            out.append(pytest.param(case, cmd, id=f"{case.id}[{cmd}]"))
    return out


def _permissions_ignored(world: dict[str, Path]) -> bool:
    """Whether this process reads files it has no permission for (root with CAP_DAC_OVERRIDE)."""
    try:
        world["unreadable"].read_bytes()
    except PermissionError:
        return False
    return True


def _inputs(case: Case, world: dict[str, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    if case.skip_root and _permissions_ignored(world):
        pytest.skip("this process ignores file permissions (root); run as a normal user to check this case")
    model = world[case.model] if case.model else world["good_model"]
    data = world[f"data:{case.data}"] if case.data else world["good_data"]
    if case.model == "two_inputs" and not case.data:
        raise AssertionError("two-input model needs its own data")
    save = world[case.save_dir] if case.save_dir else tmp_path / "save_dir"
    return model, data, save


def _nothing_written(case: Case, save: Path, world: dict[str, Path], before: set[Path]) -> None:
    if case.save_dir is None:
        assert not save.exists(), f"{save} was created: {sorted(save.rglob('*'))}"
    if case.save_dir == "inside_data":
        assert not save.exists()
    after = {p for p in world["good_data"].rglob("*")}
    assert after == before, "the calibration data folder changed"


@pytest.mark.parametrize("case,cmd", _expand(CASES))
def test_cli(case: Case, cmd: str, world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, data, save = _inputs(case, world, tmp_path)
    argv = [cmd, str(model)] + ([] if cmd == "info" else [str(data)])
    flag = SAVE_FLAG.get(cmd, "-s")
    if flag:
        argv += [flag, str(save)]
    argv += case.cli_args(cmd)
    before = set(world["good_data"].rglob("*"))
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("ptqdebug: error: "), err
    assert re.search(case.match, lines[0]), lines[0]
    assert "Traceback" not in err
    _nothing_written(case, save, world, before)


@pytest.mark.parametrize("case,cmd", _expand(CASES))
def test_api(case: Case, cmd: str, world: dict[str, Path], tmp_path: Path) -> None:
    model, data, save = _inputs(case, world, tmp_path)
    before = set(world["good_data"].rglob("*"))
    with pytest.raises(case.error) as info:
        call_api(cmd, str(model), str(data), save, **case.api_kwargs(cmd))
    message = str(info.value)
    assert "\n" not in message and re.search(case.match, message), message
    _nothing_written(case, save, world, before)


def test_matrix_covers_every_command() -> None:
    covered = {cmd for case in CASES for cmd in case.cmds}
    assert covered == set(ALL)
    assert len({c.id for c in CASES}) == len(CASES)


def test_pickled_npy_is_never_unpickled(world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("ptqdebug unpickled user data")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    for name in ("pickled", "raw_pickle", "npz_pickled"):
        with pytest.raises(DataError, match="pickled"):
            dbg.get_sensitivity_of_nodes(str(world["good_model"]), calibrated_data=str(world[f"data:{name}"]))


def test_save_dir_created_only_on_success(world: dict[str, Path], tmp_path: Path) -> None:
    """A good run creates save_dir (and its parents); the matrix above proves a failed one does not."""
    target = tmp_path / "a" / "b" / "out"
    dbg.get_calibration_nodes_stat_info(str(world["good_model"]), str(world["good_data"]), save_dir=target)
    assert (target / "cali_nodes_stat_info.json").is_file()
    shutil.rmtree(tmp_path / "a")
