"""``select_sensitive_samples`` (``hmct``'s, reference §8.3) and ``sample_sensitivity`` beside it."""

from __future__ import annotations

import numpy as np

from ..analyses.samples import SampleSensitivity
from ..analyses.samples import sample_sensitivity as _sample_sensitivity
from ..analyses.sensitivity import Progress
from ..context import Context
from ..data import Dataset
from ..errors import OptionError
from ..metrics import MetricLike
from .checks import check_data_num, check_metrics, check_progress
from .common import FloatModelArg, ModelArg, context_for, runtime_errors

__all__ = ["sample_sensitivity", "select_sensitive_samples"]


def sample_sensitivity(
    calibrated_model: ModelArg,
    calibration_data: object,
    metric: MetricLike = "cosine-similarity",
    data_num: int | None = None,
    *,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
    progress: Progress | None = None,
) -> SampleSensitivity:
    """Each sample's score: the calibrated model against the float model at the outputs, sample
    by sample (not in the original; :mod:`ptqdebug.analyses.samples`).

    Args:
        metric: one metric, as for :func:`get_sensitivity_of_nodes` (your own task metric too).
        data_num: the first N samples (default: all of them).
        float_model, providers, progress: as for :func:`get_sensitivity_of_nodes`.

    Returns:
        A :class:`~ptqdebug.analyses.samples.SampleSensitivity`; ``.order()`` lists the samples
        worst first.
    """
    ctx, name, data_num = _opened(calibrated_model, calibration_data, metric, data_num, float_model, providers, progress)
    with runtime_errors(ctx, data_num):
        return _sample_sensitivity(ctx, name, data_num, progress)


def select_sensitive_samples(
    calibrated_model: ModelArg,
    calibration_data: object,
    metric: MetricLike = "cosine-similarity",
    num_sample: int = 1,
    *,
    data_num: int | None = None,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """The ``num_sample`` samples quantization hurts most, worst first (``hmct``'s function).

    Every sample (or the first ``data_num``) is scored as :func:`sample_sensitivity` does. The
    result is calibration data that every function takes: pass it as ``calibrated_data`` to debug
    on the samples that show the loss (``data_num=1``, the functions' default, then takes the
    worst one). ``dataset.labels`` names them as the data did (file names without ``.npy``).
    """
    if isinstance(num_sample, bool) or not isinstance(num_sample, (int, np.integer)) or num_sample < 1:
        raise OptionError(f"num_sample is {num_sample!r}; expected a positive whole number (how many samples to select)")
    ctx, name, data_num = _opened(calibrated_model, calibration_data, metric, data_num, float_model, providers, progress)
    samples = ctx.samples(data_num)
    if num_sample > len(samples):
        raise OptionError(f"num_sample is {num_sample}, but there are only {len(samples)} samples in {samples.source}; "
                          f"use at most {len(samples)}")
    with runtime_errors(ctx, data_num):
        ranking = _sample_sensitivity(ctx, name, data_num, progress)
    return samples.subset(ranking.worst(int(num_sample)))


def _opened(calibrated_model: ModelArg, calibration_data: object, metric: object, data_num: object,
            float_model: FloatModelArg, providers: str | list[str] | None, progress: object) -> tuple[Context, str, int | None]:
    """The checked options (no work before them), then the context."""
    names = check_metrics(metric, "metric")
    if len(names) != 1:
        raise OptionError(f"metric is {metric!r}; expected one metric (samples are ranked by one score)")
    checked = check_data_num(data_num)
    check_progress(progress)
    ctx = context_for(calibrated_model, calibration_data, float_model, providers, True, None, None)
    ctx.samples(checked)
    return ctx, names[0], checked
