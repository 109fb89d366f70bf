"""``plot_acc_error``, ``plot_distribution`` and ``get_channelwise_data_distribution`` (reference §4, §5)."""

from __future__ import annotations

import os
from pathlib import Path

from ..analyses.accumulate import (
    KEYWORDS,
    AccumulateErrorResult,
    accumulate_error,
    configurations_for,
)
from ..analyses.distribution import (
    ChannelBoxes,
    Distribution,
    channel_boxes,
    distributions,
    flat_names,
)
from ..context import Context
from ..metrics import MetricLike
from ..errors import OptionError
from ..plots.render import Renderer
from ..report.files import ensure_dir
from ..report.names import acc_error_png, boxplot_png, distribution_png
from .checks import CURVES, check_axis, check_bool, check_data_num, check_metric, check_node_list, check_save_dir
from .common import FloatModelArg, ModelArg, context_for, runtime_errors, write_all

__all__ = [
    "get_channelwise_data_distribution", "plot_acc_error", "plot_distribution",
    "write_accumulate_error", "write_channel_boxes", "write_distributions",
]

SaveDir = str | os.PathLike[str]


def _draw(renderer: Renderer | None, jobs: list[tuple[str, object, Path, dict]]) -> list[Path]:
    """Draw the figures in ``renderer``'s workers, or here when none is given."""
    if renderer is None:
        with Renderer(workers=0) as inline:
            for kind, result, path, options in jobs:
                inline.submit(kind, result, path, **options)
            return inline.close()
    for kind, result, path, options in jobs:
        renderer.submit(kind, result, path, **options)
    return [path for _, _, path, _ in jobs]


def write_accumulate_error(results: list[AccumulateErrorResult], save_dir: SaveDir, average_mode: bool,
                           renderer: Renderer | None = None) -> list[Path]:
    folder = ensure_dir(save_dir)
    return _draw(renderer, [("accumulate_error", r, folder / acc_error_png(r.prefix, r.metric, average_mode),
                             {"average_mode": average_mode}) for r in results])


def write_distributions(items: list[Distribution], save_dir: SaveDir, renderer: Renderer | None = None) -> list[Path]:
    folder = ensure_dir(save_dir)
    return _draw(renderer, [("distribution", d, folder / distribution_png(d, items), {}) for d in items])


def write_channel_boxes(items: list[ChannelBoxes], save_dir: SaveDir, renderer: Renderer | None = None) -> list[Path]:
    folder = ensure_dir(save_dir)
    names = [b.name for b in items]
    return _draw(renderer, [("channel_boxes", b, folder / boxplot_png(b.name, names), {}) for b in items])


def accumulate_errors(ctx: Context, quantize_node: object = None, non_quantize_node: object = None,
                      metric: MetricLike = "cosine-similarity", data_num: int | None = 1) -> list[AccumulateErrorResult]:
    """One result per figure the arguments ask for (see :mod:`ptqdebug.analyses.accumulate`), on
    the first ``data_num`` samples (None: all). Every name is checked before the first curve is
    computed."""
    metric = check_metric(metric, per_tensor=CURVES)
    check_acc_nodes(ctx, quantize_node, non_quantize_node)
    figures = configurations_for(ctx, quantize_node, non_quantize_node)
    samples = range(len(ctx.samples(data_num)))
    return [accumulate_error(ctx, configs, prefix=prefix, metric=metric, samples=samples) for prefix, configs in figures]


def check_acc_nodes(ctx: Context | None, quantize_node: object, non_quantize_node: object) -> None:
    """``quantize_node`` / ``non_quantize_node``: shapes, names (all of them, keywords not mixed
    with names) and, with a context, that every name is in the model."""
    model = None if ctx is None else ctx.model
    check_node_list(model, quantize_node, "quantize_node", expand=True, keywords=KEYWORDS)
    check_node_list(None, non_quantize_node, "non_quantize_node", expand=True)
    if non_quantize_node is not None and set(flat_names(non_quantize_node, "non_quantize_node")) & set(KEYWORDS):
        raise OptionError("non_quantize_node cannot be 'weight' or 'activation'; use quantize_node=['weight','activation'] "
                          "for those curves")
    check_node_list(model, non_quantize_node, "non_quantize_node", expand=True)


def plot_acc_error(
    calibrated_data: object,
    model_or_file: ModelArg,
    quantize_node: object = None,
    non_quantize_node: object = None,
    metric: MetricLike = "cosine-similarity",
    average_mode: bool = False,
    save_dir: SaveDir = "./debug_result/",
    *,
    data_num: int | None = 1,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
) -> list[AccumulateErrorResult]:
    """Cumulative error curves at every node's outputs, float vs chosen configurations (reference §4).

    ``quantize_node``: ``['weight', 'activation']`` (or one of them) for the whole-model split;
    names for one curve per node (only it quantized); nested lists for one curve per group.
    ``non_quantize_node``: names or nested lists un-quantized from the calibrated model (each flat
    name really is switched off, unlike the original). ``average_mode`` draws running means.
    Writes ``{prefix}_{metric}.png`` (``average_{prefix}_{metric}.png``) in ``save_dir`` and returns
    the curves, on the first calibration sample as the original draws them, or (beyond it) the
    mean over the first ``data_num`` samples (None: all).
    """
    metric = check_metric(metric, per_tensor=CURVES)
    average_mode = check_bool(average_mode, "average_mode")
    data_num = check_data_num(data_num)
    check_acc_nodes(None, quantize_node, non_quantize_node)
    check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers)
    with runtime_errors(ctx, data_num):
        results = accumulate_errors(ctx, quantize_node, non_quantize_node, metric, data_num)
    write_all(save_dir, lambda folder: write_accumulate_error(results, folder, average_mode))
    return results


def plot_distribution(
    model_or_file: ModelArg,
    calibrated_data: object,
    nodes_list: object,
    save_dir: SaveDir = "./debug_result/",
    *,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
) -> list[Distribution]:
    """Float vs quantized data of activation / weight calibration nodes and ordinary nodes (reference §5.1-5.3).

    Writes ``activation_<name>.png``, ``weight_<name>.png`` and ``node_output_:<output>_of_<node>.png``.
    """
    check_node_list(None, nodes_list, "nodes_list", expand=False, required=True)
    check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers)
    with runtime_errors(ctx, 1):
        items = distributions(ctx, nodes_list)
    write_all(save_dir, lambda folder: write_distributions(items, folder))
    return items


def get_channelwise_data_distribution(
    model_or_file: ModelArg,
    calibrated_data: object,
    nodes_list: object,
    axis: int | None = None,
    save_dir: SaveDir = "./debug_result/",
    *,
    float_model: FloatModelArg = None,
    providers: str | list[str] | None = None,
) -> list[ChannelBoxes]:
    """Per-channel box plots of calibration nodes' inputs (reference §5.4); writes ``<name>_boxplot.png``.

    ``axis`` defaults to the weight's channel axis, and to 1 for activations, or to the last axis
    for an activation a MatMul or Gemm reads (a transformer's hidden features; see
    :func:`~ptqdebug.analyses.distribution.activation_axis`).
    """
    check_node_list(None, nodes_list, "nodes_list", expand=True, required=True)
    axis = check_axis(axis)
    check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers)
    with runtime_errors(ctx, 1):
        items = channel_boxes(ctx, nodes_list, axis)
    write_all(save_dir, lambda folder: write_channel_boxes(items, folder))
    return items
