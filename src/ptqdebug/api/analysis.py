"""``sensitivity_analysis`` and ``get_calibration_nodes_stat_info`` (reference §7)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analyses.candidates import flat_names
from ..analyses.partial import ORDERS, QTYPES, PartialQuantizationResult, partial_quantization
from ..analyses.sensitivity import Progress, SensitivityResult
from ..analyses.stats import CalibrationNodeStats, calibration_node_stats
from ..context import Context
from ..errors import OptionError
from ..metrics import MetricLike, get_metrics, pick_direction
from ..plots.render import Renderer
from ..report.files import dump_json, ensure_dir
from ..report.tables import info_table
from .checks import (
    check_bool,
    check_data_num,
    check_metric,
    check_node_list,
    check_pick_threshold,
    check_progress,
    check_save_dir,
)
from .common import (
    FloatModelArg,
    ModelArg,
    ProgressFactory,
    context_for,
    logger,
    runtime_errors,
    show_info,
    step_progress,
    write_all,
)
from .sensitivity import sensitivity_of_nodes

__all__ = ["get_calibration_nodes_stat_info", "pick_sensitive", "sensitivity_analysis", "write_partial", "write_stats"]

SaveDir = str | os.PathLike[str]


def pick_sensitive(result: SensitivityResult, metric: str, pick_threshold: float) -> list[str]:
    """Candidates at or past the threshold (cosine ≤ t; for lower-is-better metrics ≥ t), worst first;
    candidates whose outputs became non-finite always qualify."""
    (m,) = get_metrics(metric)
    out = []
    for e in result.entries:
        v = e.scores[m.name]
        if e.nonfinite or math.isnan(v) or (v <= pick_threshold if m.higher_is_better else v >= pick_threshold):
            out.append(e.name)
    return out


def write_partial(result: PartialQuantizationResult, save_dir: SaveDir, renderer: Renderer | None = None) -> list[Path]:
    folder = ensure_dir(save_dir)
    png = folder / "partial_quantization.png"
    if renderer is None:
        from ..plots import partial_quantization_figure, save_figure

        save_figure(partial_quantization_figure(result), png)
    else:
        renderer.submit("partial_quantization", result, png)
    return [png, dump_json(folder / "partial_quantization.json", result.to_dict())]


def run_sensitivity_analysis(
    ctx: Context, *, pick_threshold: float, data_num: int | None, sensitive_nodes: object,
    metric: MetricLike = "cosine-similarity", node_sweep: SensitivityResult | None = None,
    progress: Progress | ProgressFactory | None = None, qtype: str = "float32", order: str = "sensitivity",
) -> PartialQuantizationResult:
    """Choose the sensitive nodes (a node sweep unless given) and score partial quantization."""
    metric = check_metric(metric)
    pick_threshold = check_pick_threshold(pick_threshold, metric)
    if sensitive_nodes:
        check_node_list(ctx.model, sensitive_nodes, "sensitive_nodes", expand=True)
        nodes = flat_names(sensitive_nodes, "sensitive_nodes")
    else:
        if node_sweep is None or get_metrics(metric)[0].name not in node_sweep.metrics:
            node_sweep = sensitivity_of_nodes(ctx, metrics=metric, node_type="node", data_num=data_num,
                                              progress=step_progress(progress, "Progress"))
        nodes = pick_sensitive(node_sweep, metric, pick_threshold)
        logger.info("Analyzing nodes that sensitivity less than %s.", pick_threshold)
        if not nodes:
            where, move = pick_direction(metric)
            logger.info("no node's %s is %s pick_threshold %s; nothing to un-quantize (%s the threshold to pick some).",
                        metric, where, pick_threshold, move)
    return partial_quantization(ctx, nodes, metric=metric, pick_threshold=pick_threshold, data_num=data_num,
                                progress=step_progress(progress, "Analyzing"), qtype=qtype, order=order)


def sensitivity_analysis(
    model_or_file: ModelArg,
    calibrated_data: object,
    pick_threshold: float = 0.999,
    data_num: int | None = 1,
    sensitive_nodes: object = None,
    save_dir: SaveDir | None = "./debug_result/",
    *,
    metric: MetricLike = "cosine-similarity",
    qtype: str = "float32",
    order: str = "sensitivity",
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    progress: Progress | ProgressFactory | None = None,
    cache: bool = True,
    workers: int | None = None,
    executor: str | None = None,
) -> PartialQuantizationResult:
    """Partial quantization analysis (reference §7.1).

    Without ``sensitive_nodes``, a node-level sweep picks the nodes whose score is at or below
    ``pick_threshold`` (at or above it for a metric where lower is better, such as mse; worst
    first). For each of them: the score with only it quantized, and the
    score of the calibrated model with it and all before it un-quantized — or, with
    ``qtype="int16"`` (``hmct``'s extension), with their activation calibration nodes in int16
    instead (weights stay 8-bit; see :mod:`ptqdebug.analyses.int16`). ``order="greedy"`` orders the
    nodes by what each adds to the ones before it instead of by their own sensitivity: fewer nodes
    for the same score, n(n+1)/2 configurations instead of n. Writes
    ``partial_quantization.png`` and ``partial_quantization.json`` (none with ``save_dir=None``)
    and returns the numbers.
    """
    metric = check_metric(metric)
    if qtype not in QTYPES:
        raise OptionError(f"qtype {qtype!r} is not supported; expected one of {', '.join(QTYPES)}")
    if order not in ORDERS:
        raise OptionError(f"order {order!r} is not supported; expected one of {', '.join(ORDERS)}")
    check_pick_threshold(pick_threshold, metric)
    data_num = check_data_num(data_num)
    check_progress(progress)
    check_node_list(None, sensitive_nodes, "sensitive_nodes", expand=True)
    if save_dir is not None:
        check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers, cache, workers, executor)
    ctx.samples(data_num)
    with runtime_errors(ctx, data_num):
        result = run_sensitivity_analysis(ctx, pick_threshold=pick_threshold, data_num=data_num,
                                          sensitive_nodes=sensitive_nodes, metric=metric, progress=progress, qtype=qtype,
                                          order=order)
    if save_dir is not None:
        write_all(save_dir, lambda folder: write_partial(result, folder))
    return result


def display_row(s: CalibrationNodeStats) -> dict[str, str]:
    """The original's visualize strings: first value and ',...' per channel (or block); summary per tensor."""
    if s.granularity != "per-tensor":
        first = lambda v, f: (f.format(v[0]) + ",...") if v else ""  # noqa: E731
        return {"Tensor_type": s.tensor_type, "Granularity": s.granularity, "Thresholds": first(s.thresholds, "{:.6f}"),
                "Scales": first(s.scales, "{:.6f}"), "Max_vals": first(s.max_vals, "{:.6f}"), "Min_nz_vals": first(s.min_nz_vals, "{:.6e}")}
    positive = [v for v in s.min_nz_vals if v > 0]
    return {"Tensor_type": s.tensor_type, "Granularity": s.granularity,
            "Thresholds": f"{s.thresholds[0]:.6f}" if s.thresholds else "", "Scales": f"{s.scales[0]:.6f}" if s.scales else "",
            "Max_vals": f"{max(s.max_vals):.6f}" if s.max_vals else "", "Min_nz_vals": f"{min(positive):.6e}" if positive else "0"}


def write_stats(stats: list[CalibrationNodeStats], save_dir: SaveDir, visualize: bool) -> list[Path]:
    folder = ensure_dir(save_dir)
    written = [dump_json(folder / "cali_nodes_stat_info.json", {s.name: s.to_dict() for s in stats})]
    if visualize:
        from ..plots import save_figure, stat_info_figure

        for kind in ("weight", "feature"):
            chosen = [s for s in stats if s.tensor_type == kind]
            if chosen:
                written.append(save_figure(stat_info_figure(chosen, kind), folder / f"{kind}_stat_info.png"))
    return written


def get_calibration_nodes_stat_info(
    model_or_file: ModelArg,
    calibrated_data: object,
    nodes_list: object = None,
    save_dir: SaveDir = "./debug_result/",
    visualize: bool = False,
    *,
    data_num: int | None = None,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Thresholds, scales, per-channel max and smallest non-zero |value| of calibration nodes (reference §7.2).

    Saved as ``cali_nodes_stat_info.json`` (the original wrote a pickled ``.npy``). Returns the
    numbers per node, or with ``visualize``, as the original, their display strings (first value
    and ``",..."`` per channel; the table it logs) and draws ``weight_stat_info.png`` /
    ``feature_stat_info.png``; the JSON file holds the numbers either way. Activation statistics
    use every sample (``data_num`` to limit), in the float model.
    """
    data_num = check_data_num(data_num)
    visualize = check_bool(visualize, "visualize")
    check_node_list(None, nodes_list, "nodes_list", expand=True)
    check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers)
    ctx.samples(data_num)
    check_node_list(ctx.model, nodes_list, "nodes_list", expand=True)
    with runtime_errors(ctx, data_num):
        stats = calibration_node_stats(ctx, nodes_list, data_num)
    write_all(save_dir, lambda folder: write_stats(stats, folder, visualize))
    if visualize:
        shown: dict[str, dict[str, Any]] = {s.name: display_row(s) for s in stats}
        show_info(info_table("calibration nodes stat info", "node", shown))
        return shown
    return {s.name: s.to_dict() for s in stats}
