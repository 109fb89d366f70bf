"""``check_deployment`` (not in the original): the model as ONNX Runtime deploys it against the
simulation every other function analyses."""

from __future__ import annotations

from collections.abc import Sequence

from ..analyses.deployment import DeploymentCheck
from ..analyses.deployment import check_deployment as _check_deployment
from ..analyses.sensitivity import Progress
from ..metrics import MetricLike
from .checks import check_data_num, check_metrics, check_progress
from .common import FloatModelArg, ModelArg, context_for, runtime_errors

__all__ = ["check_deployment"]


def check_deployment(
    model_or_file: ModelArg,
    calibrated_data: object,
    metrics: MetricLike | Sequence[MetricLike] = "cosine-similarity",
    data_num: int | None = None,
    *,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    progress: Progress | None = None,
) -> DeploymentCheck:
    """Whether ONNX Runtime, running the calibrated model with its default optimizations (which
    fuse QuantizeLinear/DequantizeLinear into integer kernels), computes what ptqdebug analyses
    (the model as ONNX defines it).

    Compares, at every floating-point model output, the deployed model and the simulation with the
    float model, and the two with each other; see :mod:`ptqdebug.analyses.deployment`.

    Args:
        metrics: one metric name or a list (the first decides ``agrees``).
        data_num: how many samples, the first ones (default: all).
        float_model, providers, progress: as for :func:`get_sensitivity_of_nodes`; the deployed
            session runs on ``providers`` too.

    Returns:
        A :class:`~ptqdebug.analyses.deployment.DeploymentCheck`: ``agrees``, ``summary()`` and the
        scores per output.
    """
    mets = check_metrics(metrics)
    check_progress(progress)
    data_num = check_data_num(data_num)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers, True, None, None)
    ctx.samples(data_num)
    with runtime_errors(ctx, data_num):
        return _check_deployment(ctx, mets, data_num, progress)
