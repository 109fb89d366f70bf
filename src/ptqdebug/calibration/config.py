"""A YAML configuration in the original toolchain's layout, read into :func:`calibrate` arguments.

The groups and key names are the original's (``model_parameters``, ``input_parameters``,
``calibration_parameters``), so an existing configuration mostly works as is; ``docs/calibration.md``
shows an example with every key. Relative paths are relative to the YAML file's folder.

* Keys ptqdebug uses are mapped to :func:`calibrate` arguments (table in the docs).
* Keys of the original that only matter for its compiler or runtime (``march``,
  ``input_type_rt``, ``compiler_parameters``, ...) are accepted and ignored (logged).
* Any other key in a known group is a typo: an :class:`OptionError` names it and the closest
  known key.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..listsyntax import parse_list
from .preprocess import parse_floats

__all__ = ["CalibrationConfig", "load_config"]

logger = logging.getLogger("ptqdebug.calibration")

#: group → keys ptqdebug reads
_USED: dict[str, set[str]] = {
    "model_parameters": {"onnx_model", "working_dir", "output_model_file_prefix", "debug_mode", "node_info"},
    "input_parameters": {"input_name", "input_shape", "input_type_train", "input_layout_train", "norm_type",
                         "mean_value", "scale_value", "std_value", "resize_type"},
    "calibration_parameters": {"cal_data_dir", "calibration_type", "max_percentile", "per_channel",
                               "weight_per_channel", "activation_symmetric", "optimization", "cal_data_num",
                               "set_all_nodes_int16", "int16_nodes", "node_info", "quant_pre_process", "run_on_cpu"},
}
#: group → keys of the original that ptqdebug accepts and ignores
_IGNORED: dict[str, set[str]] = {
    "model_parameters": {"march", "layer_out_dump", "log_level", "remove_node_type", "remove_node_name",
                         "output_nodes", "node_config", "set_node_data_type"},
    "input_parameters": {"input_type_rt", "input_layout_rt", "input_space_and_range", "input_batch",
                         "separate_batch", "separate_name", "odd_shape"},
    "calibration_parameters": {"cal_data_type", "preprocess_on", "run_on_bpu", "num_bin",
                               "max_num_bin", "mix_topk", "use_int16", "set_model_output_int16",
                               "weight_percentile", "quant_config"},
}
_IGNORED_GROUPS = {"compiler_parameters", "custom_op"}
_NORM = {"data_mean_and_scale": (True, True), "data_mean": (True, False), "data_scale": (False, True),
         "no_preprocess": (False, False)}


@dataclass(frozen=True)
class CalibrationConfig:
    """What a configuration file says: the three positional arguments and the keyword options."""

    float_model: str | None = None
    inputs: str | None = None
    out_dir: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "the configuration"


def _bool(value: object, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise OptionError(f"{key} in {where} is {value!r}; expected true or false")


def _number(value: object, key: str, where: str, kind: type = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise OptionError(f"{key} in {where} is {value!r}; expected a {'whole ' if kind is int else ''}number") from None


def _names(value: object, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parsed = parse_list(value, key) if value.strip().startswith("[") else [v for v in value.replace(";", ",").split(",")]
        value = parsed if isinstance(parsed, list) else [parsed]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OptionError(f"{key} is {value!r}; expected a list of node names")
    return [v.strip() for v in value if v.strip()]


def _single(value: object, key: str) -> object:
    if isinstance(value, str) and ";" in value.strip().strip(";"):
        raise OptionError(
            f"{key} {value!r} lists several inputs; image preprocessing feeds single-input models: "
            "give multi-input data as a loader script (file.py:function) and leave out the input_parameters"
        )
    return value.strip().strip(";") if isinstance(value, str) else value


def _check_keys(group: str, values: Mapping[str, Any], where: str) -> None:
    for key in values:
        if key in _USED[group]:
            continue
        if key in _IGNORED[group]:
            logger.info("%s: %s.%s is a setting of the original toolchain's compiler/runtime; ignored", where, group, key)
            continue
        hint = difflib.get_close_matches(str(key), sorted(_USED[group] | _IGNORED[group]), n=1)
        raise OptionError(
            f"unknown key {key!r} in {group} of {where}"
            + (f"; did you mean {hint[0]!r}?" if hint else f"; expected one of {', '.join(sorted(_USED[group]))}")
        )


def load_config(path: str | os.PathLike[str]) -> CalibrationConfig:
    """Read a calibration YAML file (see module doc); a one-line :class:`OptionError` on mistakes."""
    import yaml

    p = Path(path)
    where = repr(str(p))
    if not p.is_file():
        raise OptionError(f"configuration file {where} does not exist; expected a YAML file")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise OptionError(f"configuration file {where} is not valid YAML{at} ({getattr(exc, 'problem', None) or exc}); fix its syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"configuration file {where} could not be read ({exc})") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise OptionError(f"configuration file {where} holds a {type(doc).__name__}; expected groups such as model_parameters: and calibration_parameters:")
    groups: dict[str, Mapping[str, Any]] = {}
    for group, values in doc.items():
        if group in _IGNORED_GROUPS:
            logger.info("%s: %s is a group of the original toolchain's compiler; ignored", where, group)
            continue
        if group not in _USED:
            hint = difflib.get_close_matches(str(group), [*_USED, *_IGNORED_GROUPS], n=1)
            raise OptionError(f"unknown group {group!r} in {where}" + (f"; did you mean {hint[0]!r}?" if hint else f"; expected {', '.join(_USED)}"))
        values = values or {}
        if not isinstance(values, Mapping):
            raise OptionError(f"{group} in {where} is a {type(values).__name__}; expected key: value lines under it")
        _check_keys(group, values, where)
        groups[group] = values
    return _build(groups, p.parent, where)


def _path(value: object, base: Path) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    script = ":" in text and text.rsplit(":", 1)[0].endswith(".py")
    target = text.rsplit(":", 1)[0] if script else text
    full = target if os.path.isabs(os.path.expanduser(target)) else str(base / target)
    full = os.path.expanduser(full)
    return f"{full}:{text.rsplit(':', 1)[1]}" if script else full


def _build(groups: Mapping[str, Mapping[str, Any]], base: Path, where: str) -> CalibrationConfig:
    model = groups.get("model_parameters", {})
    inp = groups.get("input_parameters", {})
    cal = groups.get("calibration_parameters", {})
    opts: dict[str, Any] = {}

    prefix = model.get("output_model_file_prefix")
    if prefix:
        opts["model_name"] = f"{prefix}_calibrated_model.onnx"
    modes = model.get("debug_mode") or []
    for mode in [modes] if isinstance(modes, str) else list(modes):
        if mode != "dump_calibration_data":
            logger.info("%s: debug_mode %r is not a calibration setting; ignored", where, mode)

    if "calibration_type" in cal:
        opts["method"] = str(cal["calibration_type"])
    if "max_percentile" in cal:
        p = cal["max_percentile"]
        if isinstance(p, list):
            raise OptionError(f"max_percentile in {where} is a list; ptqdebug takes one value (default tries max, the percentile and kl)")
        opts["percentile"] = _number(p, "max_percentile", where)
        if str(opts.get("method", "")).strip().lower() == "max" and opts["percentile"] < 1.0:
            opts["method"] = "percentile"  # the original's max with max_percentile < 1 is max-percentile
    if "per_channel" in cal and _bool(cal["per_channel"], "per_channel", where):
        raise OptionError(
            f"per_channel: true in {where} asks for per-channel activation calibration (the original's meaning), which "
            "ptqdebug does not do; activations are per tensor and weights per channel (weight_per_channel)"
        )
    if "weight_per_channel" in cal:
        opts["per_channel"] = _bool(cal["weight_per_channel"], "weight_per_channel", where)
    if "activation_symmetric" in cal:
        opts["activation_symmetric"] = _bool(cal["activation_symmetric"], "activation_symmetric", where)
    optim = cal.get("optimization") or []
    for item in [optim] if isinstance(optim, str) else list(optim):
        if item == "asymmetric":
            opts["activation_symmetric"] = False
        else:
            logger.info("%s: optimization %r is not supported by ptqdebug calibrate; ignored", where, item)
    if "cal_data_num" in cal and cal["cal_data_num"] is not None:
        opts["data_num"] = _number(cal["cal_data_num"], "cal_data_num", where, int)
    if "set_all_nodes_int16" in cal:
        opts["all_int16"] = _bool(cal["set_all_nodes_int16"], "set_all_nodes_int16", where)
    if "quant_pre_process" in cal:
        opts["optimize"] = _bool(cal["quant_pre_process"], "quant_pre_process", where)
    int16 = _names(cal.get("int16_nodes"), "int16_nodes")
    on_cpu = _names(cal.get("run_on_cpu"), "run_on_cpu")  # the original's way to keep a node in float
    for key_group in (model, cal):
        info = key_group.get("node_info") or {}
        if not isinstance(info, Mapping):
            raise OptionError(f"node_info in {where} is a {type(info).__name__}; expected node name: {{InputType: int16}} entries")
        for node, spec in info.items():
            if not isinstance(spec, Mapping):
                raise OptionError(f"node_info {node!r} in {where} is {spec!r}; expected {{InputType: int16}}")
            spec = {("ON" if k is True else k): v for k, v in spec.items()}  # YAML 1.1 reads an unquoted ON as true
            bad = [k for k in spec if k not in ("InputType", "OutputType", "ON")]
            if bad:
                raise OptionError(f"node_info {node!r} in {where} has {bad[0]!r}; expected InputType (int8/int16) or ON (BPU/CPU)")
            if str(spec.get("InputType", "int8")).lower() == "int16":
                int16.append(str(node))
            if str(spec.get("ON", "BPU")).upper() == "CPU":
                on_cpu.append(str(node))
            if str(spec.get("OutputType", "int8")).lower() == "int16":
                logger.warning("%s: node_info %r OutputType int16 is not supported; name the nodes that read it in int16_nodes", where, node)
    if int16:
        opts["int16_nodes"] = list(dict.fromkeys(int16))
    if on_cpu:
        opts["float_nodes"] = list(dict.fromkeys(on_cpu))

    pre: dict[str, Any] = {}
    color = _single(inp.get("input_type_train"), "input_type_train")
    if color not in (None, "featuremap"):
        pre["color"] = str(color)
    if inp.get("input_layout_train"):
        pre["layout"] = str(_single(inp["input_layout_train"], "input_layout_train"))
    if inp.get("input_shape"):
        pre["input_shape"] = _single(inp["input_shape"], "input_shape")
    if inp.get("resize_type"):
        pre["resize"] = str(inp["resize_type"])
    norm = str(inp.get("norm_type", "data_mean_and_scale")).strip()
    if norm not in _NORM:
        raise OptionError(f"norm_type {norm!r} in {where} is not supported; expected one of {', '.join(_NORM)}")
    use_mean, use_scale = _NORM[norm]
    if use_mean and inp.get("mean_value") is not None:
        pre["mean"] = _single(inp["mean_value"], "mean_value")
    if use_scale and inp.get("scale_value") is not None:
        pre["scale"] = _single(inp["scale_value"], "scale_value")
    if use_scale and inp.get("std_value") is not None:
        std = parse_floats(_single(inp["std_value"], "std_value"), "std_value") or ()
        if any(s == 0 for s in std):
            raise OptionError(f"std_value in {where} has a 0; expected non-zero standard deviations")
        pre["scale"] = [1.0 / s for s in std]
    if pre:
        opts["preprocess"] = pre
    if inp.get("input_name"):
        _single(inp["input_name"], "input_name")  # informational: input names come from the model

    return CalibrationConfig(
        float_model=_path(model.get("onnx_model"), base),
        inputs=_path(cal.get("cal_data_dir"), base),
        out_dir=_path(model.get("working_dir"), base),
        options=opts,
        source=where,
    )
