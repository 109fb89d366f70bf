"""``select_sensitive_samples`` (``hmct``'s, reference §8.3) and ``sample_sensitivity`` beside it."""

from __future__ import annotations

from ..analyses.samples import SampleSensitivity
from ..analyses.samples import sample_sensitivity as _sample_sensitivity
from ..analyses.sensitivity import Progress
from ..context import Context
from ..data import Dataset
from ..errors import OptionError
from ..metrics import MetricLike
from .checks import check_data_num, check_metric, check_num_sample, check_progress
from .common import FloatModelArg, ModelArg, context_for, runtime_errors

__all__ = ["sample_sensitivity", "select_sensitive_samples"]


def sample_sensitivity(
    model_or_file: ModelArg,
    calibrated_data: object,
    metric: MetricLike = "cosine-similarity",
    *,
    data_num: int | None = None,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
    progress: Progress | None = None,
) -> SampleSensitivity:
    """Each sample's score: the calibrated model against the float model at the outputs, sample
    by sample (not in the original; :mod:`ptqdebug.analyses.samples`).

    Args:
        metric: one metric, as for :func:`get_sensitivity_of_nodes` (your own task metric too).
        data_num: the first N samples (default: all of them).
        float_model, providers, progress: as for :func:`local_errors`.

    Returns:
        A :class:`~ptqdebug.analyses.samples.SampleSensitivity`; ``.order()`` lists the samples
        worst first.
    """
    ctx, name, data_num = _opened(model_or_file, calibrated_data, metric, data_num, float_model, providers, progress)
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
    worst one). ``dataset.labels`` names them as the data did (file names without ``.npy``); a
    metric that reads labels by sample position sees positions in the selection (0 is the worst),
    so look its labels up through ``dataset.labels``.
    """
    if calibrated_model is None:  # (named as hmct names them, not model_or_file / calibrated_data)
        raise OptionError("there is no calibrated model: pass calibrated_model (e.g. './calibrated_model.onnx')")
    if calibration_data is None and not isinstance(calibrated_model, Context):
        raise OptionError("there is no calibration data: pass calibration_data (e.g. './calibration_data/')")
    check_num_sample(num_sample)
    ctx, name, data_num = _opened(calibrated_model, calibration_data, metric, data_num, float_model, providers, progress)
    samples = ctx.samples(data_num)
    check_num_sample(num_sample, len(samples), data_num)
    with runtime_errors(ctx, data_num):
        ranking = _sample_sensitivity(ctx, name, data_num, progress)
    return samples.subset(ranking.worst(int(num_sample)), f"the {num_sample} selected of {samples.source}")


def _opened(model: ModelArg, data: object, metric: object, data_num: object, float_model: FloatModelArg,
            providers: str | list[str] | None, progress: object) -> tuple[Context, str, int | None]:
    """The checked options (no work before them), then the context."""
    name = check_metric(metric)
    checked = check_data_num(data_num)
    check_progress(progress)
    ctx = context_for(model, data, float_model, providers, True, None, None)
    ctx.samples(checked)
    return ctx, name, checked
