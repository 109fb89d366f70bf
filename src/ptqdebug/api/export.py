"""``export_model`` (not in the original): write a configuration ptqdebug scored as a model file.

``runall`` and ``sensitivity_analysis`` score the calibrated model with the most sensitive nodes
kept in float; this writes exactly that model, from the calibrated model itself (no float model or
re-calibration needed), ready to deploy or to check with :func:`check_deployment`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..analyses.candidates import flat_names
from ..analyses.int16 import int16_twins
from ..context import Context
from ..data import data_folder_around
from ..engine.build import standalone_model
from ..errors import ModelError, OptionError
from ..model import CalibratedModel, load_model
from ..report.files import ensure_dir, write_atomic
from .checks import check_node_list
from .common import FloatModelArg, ModelArg

__all__ = ["ExportedModel", "export_model"]

#: past this a model is written with its initializers in one external-data file beside it
_PROTOBUF_LIMIT = 2**31 - 2**26


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_model` wrote: the file and the calibration nodes switched off in it."""

    path: Path
    switched_off: tuple[str, ...]
    int16: tuple[str, ...] = ()  # 8-bit activation calibration nodes written in int16
    #: weight calibration nodes of the named nodes that stay on: stored as integers, no float model
    #: (every configuration ptqdebug scored had them on too)
    stayed: tuple[str, ...] = ()
    #: every calibration node is off: the file is the float model (as ptqdebug runs it: deleted
    #: Relu/Clip restored), which no recommendation is
    all_off: bool = False


def export_model(
    model_or_file: ModelArg,
    save_path: str | os.PathLike[str],
    float_nodes: object = None,
    *,
    int16_nodes: object = None,
    float_model: FloatModelArg = None,
) -> ExportedModel:
    """Write the calibrated model with the calibration nodes of ``float_nodes`` switched off.

    The file computes what ptqdebug scored for that configuration (partial quantization's row k
    for ``float_nodes`` = its nodes 1..k, e.g. ``runall``'s ``verdict.keep_float``): the same
    QuantizeLinear/DequantizeLinear pairs, without those of the named nodes; where ONNX Runtime's
    quantizer had deleted a Relu/Clip before a pair that goes, the Relu/Clip is back.

    Args:
        model_or_file: the calibrated QDQ model (path, ``onnx.ModelProto`` or a loaded one).
        save_path: the ``.onnx`` file to write (its folder is created).
        float_nodes: ordinary nodes (their calibration nodes) and calibration nodes to switch off:
            a name or a list of names (at least one of ``float_nodes`` and ``int16_nodes``).
        int16_nodes: ordinary nodes or calibration nodes whose activation calibration nodes become
            int16 (same range; weights stay 8-bit): the configuration
            ``sensitivity_analysis(qtype="int16")`` scored. Below opset 21 the 16-bit pairs are ONNX
            Runtime's own (``com.microsoft`` domain).
        float_model: the float model, for QDQ models that store weights as integers (needed to
            switch those weights off).

    Returns:
        An :class:`ExportedModel`: the path written, the calibration nodes switched off and those
        made int16.
    """
    check_node_list(None, float_nodes, "float_nodes", expand=True)
    check_node_list(None, int16_nodes, "int16_nodes", expand=True)
    both = [n for n in flat_names(float_nodes, "float_nodes") if n in flat_names(int16_nodes, "int16_nodes")] if (
        float_nodes is not None and int16_nodes is not None) else []
    if both:
        raise OptionError(f"{both[0]!r} is in both float_nodes and int16_nodes; expected each node in at most one of them")
    if isinstance(save_path, bytes) or not isinstance(save_path, (str, os.PathLike)) or not str(save_path).strip():
        raise OptionError(f"save_path is {save_path!r}; expected the model file to write, e.g. 'partial.onnx'")
    target = Path(save_path)
    if target.suffix != ".onnx":
        raise OptionError(f"save_path {str(target)!r} does not end in .onnx; expected the model file to write, e.g. partial.onnx")
    if target.is_dir():
        raise OptionError(f"save_path {str(target)!r} is a folder; expected the model file to write, e.g. partial.onnx")
    model = model_or_file.model if isinstance(model_or_file, Context) else load_model(model_or_file, float_model)
    inputs = [("the calibrated model itself", model.path), ("the float model itself", float_model)]
    if isinstance(model_or_file, Context):  # the files the context was read from (its float model too)
        inputs += [("a file the context was read from", p) for p in model_or_file.input_paths]
    for what, given in inputs:
        if isinstance(given, (str, os.PathLike)) and _same_file(target, given):
            raise OptionError(f"save_path {str(target)!r} is {what}; expected a new file to write beside it, "
                              "e.g. partial.onnx")
    data = data_folder_around(target, model.inputs)
    if data is not None:
        raise OptionError(f"save_path {str(target)!r} is inside the calibration data folder {str(data)!r}; expected a "
                          "file outside it (a model written there would make the folder unreadable as data)")
    if "horizon" in model.source_format:
        raise ModelError("the model holds Horizon calibration nodes (HzCalibration); export writes QDQ models: for the "
                         "original toolchain keep these nodes in float with run_on_cpu in its configuration (or their "
                         "activations in int16 with InputType: int16 in node_info)")
    if not float_nodes and not int16_nodes:
        raise OptionError("nothing to change: float_nodes and int16_nodes are both empty; expected the nodes to keep in "
                          "higher precision (e.g. runall's verdict.keep_float; on the command line --float-nodes a,b)")
    off = _named(model, float_nodes, "float_nodes")
    inexact = model.fixed_quantizers
    fixed = sorted(inexact & set(flat_names(float_nodes, "float_nodes"))) if float_nodes is not None else []
    if fixed:  # named on purpose (a node's own, below, stay on as in every configuration scored)
        raise OptionError(f"calibration node {fixed[0]!r} stores its weight as integers and cannot be switched off without "
                          "the float model; pass float_model= / --float-model FLOAT.onnx")
    stayed = tuple(q.name for q in model.quantizers if q.name in off & inexact)
    off -= inexact
    activations = {q.name for q in model.activation_quantizers}
    asked16 = _named(model, int16_nodes, "int16_nodes")
    weights = sorted(n for n in flat_names(int16_nodes, "int16_nodes") if n in {q.name for q in model.weight_quantizers}
                     ) if int16_nodes is not None else []
    if weights:
        raise OptionError(f"int16_nodes names the weight calibration node {weights[0]!r}; int16 is for activations (weights "
                          "stay 8-bit): name its node or its input's activation calibration node")
    wider = (asked16 & activations & model.calibrated_configuration) - off
    if asked16 and not wider:
        raise OptionError("int16_nodes has no 8-bit activation calibration node that is on; expected ordinary nodes "
                          "or activation calibration nodes whose activations to widen")
    configuration = model.calibrated_configuration - off
    if wider:
        model, twins = int16_twins(model, [q.name for q in model.quantizers if q.name in wider])
        configuration = (configuration - wider) | {twins[q] for q in wider}
    proto = standalone_model(model, configuration)
    switched_off = tuple(q.name for q in model.quantizers if q.name in off)  # graph order
    made_int16 = tuple(q.name for q in model.quantizers if q.name in wider)
    for key, names in (("ptqdebug_calibration_nodes_off", switched_off), ("ptqdebug_calibration_nodes_int16", made_int16)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, ",".join(names)
    ensure_dir(target.parent, "folder of save_path")
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        _save_with_external_data(proto, target)
    else:
        write_atomic(target, lambda f: f.write(proto.SerializeToString()), binary=True)
    return ExportedModel(target, switched_off, made_int16, stayed, not configuration)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same absolute path with links and ``..``
    resolved (``nx/../m.onnx`` is ``m.onnx`` even before ``nx/`` exists, as writing it would
    create ``nx/``), or two hard links to one file."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _save_with_external_data(proto: onnx.ModelProto, target: Path) -> None:
    """``target`` and its initializers in ``target.data`` beside it (a model past protobuf's 2 GB),
    written in a staging folder next to them and renamed into place, data first."""
    data = target.with_name(f"{target.name}.data")
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as staging:
        onnx.save_model(proto, os.path.join(staging, target.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data.name)
        os.replace(os.path.join(staging, data.name), data)
        os.replace(os.path.join(staging, target.name), target)


def _named(model: CalibratedModel, names: object, what: str) -> frozenset[str]:
    """The calibration nodes a node list option stands for (checked against the model)."""
    if names is None:
        return frozenset()
    check_node_list(model, names, what, expand=True)
    return frozenset(model.expand(flat_names(names, what), what))
