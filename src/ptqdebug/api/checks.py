"""Argument checks the compatible functions run before any work and before writing any file.

Every function here raises :class:`~ptqdebug.errors.OptionError` (or
:class:`~ptqdebug.errors.UnknownNodeError`) with a one-line message, never a ``TypeError`` from
deep inside. The order in every API function is: options that need nothing (metrics, numbers,
``save_dir``) → read the model and the data → options that need the model (node names, sample
count) → compute → write. So a bad option costs a second and leaves no file behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..analyses.candidates import check_node_type, flat_names, normalize_node_list
from ..context import Context
from ..data import check_data_num
from ..errors import OptionError, UnknownNodeError
from ..metrics import METRICS, get_metrics, known_metric, per_tensor_only
from ..model import CalibratedModel
from ..report.files import check_dir

__all__ = [
    "CURVES", "check_axis", "check_bool", "check_data_num", "check_metric", "check_metrics", "check_node_list",
    "check_node_type", "check_num_sample", "check_pick_threshold", "check_progress", "check_providers", "check_save_dir",
]

_KNOWN = ", ".join(METRICS)


#: the step name for :func:`check_metrics` ``per_tensor`` of the cumulative error curves
CURVES = "cumulative error curves"


def check_metrics(value: object, what: str = "metrics", per_tensor: str | None = None) -> list[str]:
    """One metric (a name, ``file.py:function`` or a function) or a list of them → their names.
    ``per_tensor``: the step, which compares each node's own tensors (no ``all_outputs`` metric)."""
    if isinstance(value, str) or callable(value):
        names = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) or callable(v) for v in value):
        names = list(value)
    else:
        raise OptionError(f"{what} is {value!r}; expected a metric name or a list of names ({_KNOWN})")
    chosen = get_metrics(names)
    if per_tensor:
        per_tensor_only(chosen, per_tensor)
    return [m.name for m in chosen]


def check_metric(value: object, what: str = "metric", per_tensor: str | None = None) -> str:
    """Exactly one metric (a name, ``file.py:function`` or a function) → its name; ``per_tensor``
    as for :func:`check_metrics`."""
    if not (isinstance(value, str) or callable(value)):
        raise OptionError(f"{what} is {value!r}; expected one metric name ({_KNOWN})")
    return check_metrics(value, what, per_tensor)[0]


def check_pick_threshold(value: object, metric: str = "cosine-similarity") -> float:
    """A number; for cosine similarity within [-1, 1] (above 1 every node would be picked, and
    partial quantization would score the whole model node by node); for a lower-is-better metric
    not below its best value (below 0 for mse, every node would be picked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or math.isnan(float(value)):
        raise OptionError(f"pick_threshold is {value!r}; expected a number such as 0.999")
    v = float(value)
    if metric == "cosine-similarity" and not -1.0 <= v <= 1.0:
        effect = "above 1 every node is picked" if v > 1 else "below -1 no node is picked"
        raise OptionError(f"pick_threshold is {value!r}, outside the cosine similarity's range [-1, 1] ({effect}); "
                          "expected a number such as 0.999")
    m = known_metric(metric)
    if m is not None and not m.higher_is_better and m.best is not None and v < m.best:
        raise OptionError(f"pick_threshold is {value!r}, below {m.name}'s best score {m.best:g} (lower is better: nodes "
                          f"scoring at or above the threshold are picked, here every node); expected a number >= "
                          f"{m.best:g}, such as a node's {m.name} from get-sensitivity-of-nodes")
    return v


def check_bool(value: object, what: str) -> bool:
    """``True`` or ``False`` (a numpy bool, 0 or 1 too); not a string such as ``'false'``, which
    is true."""
    if not isinstance(value, (bool, np.bool_)) and not (isinstance(value, int) and value in (0, 1)):
        raise OptionError(f"{what} is {value!r}; expected True or False")
    return bool(value)


def check_progress(value: object) -> None:
    """A progress callback: a function (or a factory of them, per step), or None."""
    if value is not None and not callable(value):
        raise OptionError(f"progress is {value!r}; expected a function called as progress(done, total), or None")


def check_num_sample(num_sample: object, available: int | None = None, data_num: int | None = None) -> int:
    """A positive whole number; given the ``available`` samples (``data_num`` of them, where
    given), at most that many."""
    if isinstance(num_sample, bool) or not isinstance(num_sample, (int, np.integer)) or num_sample < 1:
        raise OptionError(f"num_sample is {num_sample!r}; expected a positive whole number (how many samples to select)")
    if available is not None and num_sample > available:
        scored = f"data_num is {data_num}" if data_num is not None else f"there are only {available} samples"
        raise OptionError(f"num_sample is {num_sample}, but {scored}; select at most {available}")
    return int(num_sample)


def check_axis(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"axis is {value!r}; expected a whole number (the channel axis) or None")
    return int(value)


def check_providers(value: object) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise OptionError(f"providers is {value!r}; expected a name such as 'CPUExecutionProvider' or a list of names")


def check_save_dir(save_dir: object, calibrated_data: object = None, model_or_file: object = None) -> Path:
    """``save_dir`` is (or can become) a writable folder, and is not inside the calibration data
    folder (results written there would make it unreadable as data next time), nor in the data
    folder of a :class:`Context` given as ``model_or_file``. Creates nothing."""
    path = check_dir(save_dir)  # type: ignore[arg-type]
    if calibrated_data is None and isinstance(model_or_file, Context):
        calibrated_data = model_or_file.data_argument
    if isinstance(calibrated_data, (str, os.PathLike)) and Path(calibrated_data).is_dir():
        data = Path(calibrated_data).resolve()
        target = path.resolve()
        if target == data or data in target.parents:
            raise OptionError(f"save_dir {str(path)!r} is inside the calibration data folder {str(calibrated_data)!r}; "
                              "expected a folder outside it (results written there would be read as data next time)")
    return path


def check_node_list(model: CalibratedModel | None, value: object, what: str, *, expand: bool,
                    keywords: Iterable[str] = (), required: bool = False) -> None:
    """A node list option: its shape (name, list, list of lists), no empty group, every name in the
    model, and — for options that switch calibration nodes (``expand``) — every ordinary node with
    at least one calibration node. ``keywords`` (``weight``/``activation`` for ``quantize_node``)
    are allowed but not mixed with node names, which the keyword curves would silently ignore.
    With ``model=None`` only the shape is checked."""
    if value is None:
        if required:
            raise OptionError(f"{what} is required; expected a node name or a list of names (see `ptqdebug info MODEL`)")
        return
    items = normalize_node_list(value, what)
    for item in items:
        if isinstance(item, list) and not item:
            raise OptionError(f"{what} contains an empty group []; expected at least one name per group")
    names = flat_names(items, what)
    keys = [n for n in names if n in set(keywords)]
    if keys:
        others = [n for n in names if n not in keys]
        if others:
            raise OptionError(f"{what} mixes {', '.join(map(repr, keys))} with node names ({', '.join(map(repr, others[:3]))}); "
                              f"the {keys[0]!r} curves ignore node names: give the names in a separate call")
        return
    if model is None:
        return
    unknown = [n for n in names if not model.is_node(n)]
    if unknown:
        raise UnknownNodeError(unknown, what, model.all_names())
    if expand:
        for item in items:
            model.expand([item] if isinstance(item, str) else item, what)
