"""ptqdebug: find where and why post-training quantization hurts an ONNX model.

A drop-in for the original toolchain's accuracy debugger (``import ptqdebug as dbg``), on standard
ONNX QDQ models and on the original's ``HzCalibration`` models, running on plain ONNX Runtime.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (
    RunResult,
    get_calibration_nodes_stat_info,
    get_channelwise_data_distribution,
    get_sensitivity_of_nodes,
    plot_acc_error,
    plot_distribution,
    runall,
    sensitivity_analysis,
    sensitivity_of_nodes,
)
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

__all__ = [
    "METRICS",
    "CalibratedModel",
    "CalibrationResult",
    "RunResult",
    "Context",
    "DataError",
    "Dataset",
    "ModelError",
    "OptionError",
    "PtqDebugError",
    "UnknownNodeError",
    "UnsupportedOpError",
    "__version__",
    "calibrate",
    "get_calibration_nodes_stat_info",
    "get_channelwise_data_distribution",
    "get_sensitivity_of_nodes",
    "load_data",
    "load_model",
    "open_context",
    "plot_acc_error",
    "plot_distribution",
    "runall",
    "sensitivity_analysis",
    "sensitivity_of_nodes",
]
