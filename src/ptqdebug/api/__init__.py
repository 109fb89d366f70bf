"""The original tool's functions, with its names, parameters and files.

``import ptqdebug as dbg`` replaces ``import horizon_nn.debug as dbg`` (or ``hmct``'s debugger):
each function takes the original's arguments, computes with the typed core
(:mod:`ptqdebug.analyses`) and writes the original's files. Arguments the original did not have
come last, keyword-only: ``float_model`` (QDQ models whose weights are stored as integers),
``providers`` (ONNX Runtime execution providers) and ``progress``.
"""

from .analysis import get_calibration_nodes_stat_info, sensitivity_analysis
from .deployment import check_deployment
from .export import export_model
from .figures import (
    get_channelwise_data_distribution,
    plot_acc_error,
    plot_distribution,
)
from .runall import RunResult, runall
from .samples import sample_sensitivity, select_sensitive_samples
from .sensitivity import get_sensitivity_of_nodes, local_errors, sensitivity_of_nodes

__all__ = [
    "RunResult",
    "check_deployment",
    "export_model",
    "get_calibration_nodes_stat_info",
    "get_channelwise_data_distribution",
    "get_sensitivity_of_nodes",
    "local_errors",
    "plot_acc_error",
    "plot_distribution",
    "runall",
    "sample_sensitivity",
    "select_sensitive_samples",
    "sensitivity_analysis",
    "sensitivity_of_nodes",
]
