"""ptqdebug: find where and why post-training quantization hurts an ONNX model.

A drop-in for the original toolchain's accuracy debugger (``import ptqdebug as dbg``), on standard
ONNX QDQ models and on the original's ``HzCalibration`` models, running on plain ONNX Runtime.

The public names below load on first use (PEP 562): ``import ptqdebug`` costs nothing, and a
process that only reads or draws results (the figure renderers) never loads ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and editors see
    from .api import (
        check_deployment,
        export_model,
        get_calibration_nodes_stat_info,
        get_channelwise_data_distribution,
        get_sensitivity_of_nodes,
        local_errors,
        plot_acc_error,
        plot_distribution,
        sample_sensitivity,
        select_sensitive_samples,
        sensitivity_analysis,
        sensitivity_of_nodes,
    )
    from .api.runall import RunResult, runall  # (the module and its function share the name)
    from .calibration import CalibrationResult, calibrate
    from .context import Context, open_context
    from .data import Dataset, load_data
    from .errors import (
        DataError,
        ModelError,
        OptionError,
        PtqDebugError,
        UnknownNodeError,
        UnsupportedOpError,
    )
    from .metrics import METRICS
    from .model import CalibratedModel, load_model

#: public name -> the module that defines it
_EXPORTS = {
    "RunResult": ".api", "check_deployment": ".api", "export_model": ".api", "get_calibration_nodes_stat_info": ".api", "get_channelwise_data_distribution": ".api",
    "get_sensitivity_of_nodes": ".api", "local_errors": ".api", "plot_acc_error": ".api", "plot_distribution": ".api", "runall": ".api",
    "sample_sensitivity": ".api", "select_sensitive_samples": ".api", "sensitivity_analysis": ".api", "sensitivity_of_nodes": ".api",
    "CalibrationResult": ".calibration", "calibrate": ".calibration",
    "Context": ".context", "open_context": ".context",
    "Dataset": ".data", "load_data": ".data",
    "DataError": ".errors", "ModelError": ".errors", "OptionError": ".errors", "PtqDebugError": ".errors",
    "UnknownNodeError": ".errors", "UnsupportedOpError": ".errors",
    "METRICS": ".metrics",
    "CalibratedModel": ".model", "load_model": ".model",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ptqdebug' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
