"""``runall``: every analysis in the original's order and folder layout, plus a report (reference §6).

One context (model read once, one engine, float references cached) serves every step, where the
original re-read the model and recomputed the float reference in each step and ran the node sweep
twice. Output tree::

    save_dir/
      node_sensitivity/sensitivity_of_{weight,activation}.log (+ .json)
      data_distribution/        activation_*.png, weight_*.png, node_output_*.png
      channelwise_distribution/ *_boxplot.png
      accumulate_error/         weight_activation_quantized_separately_<metric>.png
      sensitivity_analysis/     partial_quantization.png (+ .json)
      results.json              every number of the run
      index.html                the report: verdict first, then tables, curves and distributions
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..analyses.accumulate import KEYWORDS, AccumulateErrorResult
from ..analyses.candidates import NODE_TYPES
from ..analyses.distribution import ChannelBoxes, Distribution, channel_boxes, distributions
from ..analyses.partial import PartialQuantizationResult
from ..analyses.sensitivity import Progress, SensitivityResult
from ..analyses.verdict import Verdict, verdict
from ..errors import OptionError
from ..metrics import get_metrics
from ..plots.render import Renderer
from ..report.files import dump_json, ensure_dir
from ..report.names import acc_error_png, boxplot_png, distribution_png
from ..report.sensitivity_files import write_sensitivity
from ..report.tables import info_table, sensitivity_rows
from .analysis import pick_sensitive, run_sensitivity_analysis, write_partial
from .common import FloatModelArg, ModelArg, ProgressFactory, context_for, logger, show_info, step_progress
from .figures import accumulate_errors, write_accumulate_error, write_channel_boxes, write_distributions
from .sensitivity import sensitivity_of_nodes

__all__ = ["RunResult", "runall"]

TOP_K = 5


@dataclass(frozen=True, eq=False)
class RunResult:
    """Everything ``runall`` computed and wrote; ``results`` is what ``results.json`` holds."""

    save_dir: Path
    sensitivities: Mapping[str, SensitivityResult]
    distributions: tuple[Distribution, ...]
    channelwise: tuple[ChannelBoxes, ...]
    accumulate: tuple[AccumulateErrorResult, ...]
    partial: PartialQuantizationResult
    verdict: Verdict
    files: tuple[Path, ...]
    results: Mapping[str, Any]
    notes: tuple[str, ...]
    cache_hits: int = 0  # sweeps taken from the results cache


def _node_types(node_type: object) -> list[str]:
    if node_type is None:
        return ["weight", "activation"]
    types = [node_type] if isinstance(node_type, str) else list(node_type)  # type: ignore[call-overload]
    types = [str(t).strip("'\" ") for t in types]
    bad = [t for t in types if t not in NODE_TYPES]
    if bad or not types:
        raise OptionError(f"node_type {node_type!r} is not valid; expected None (weight and activation) or {', '.join(NODE_TYPES)}")
    return list(dict.fromkeys(types))


def _flatten(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [n for v in value for n in _flatten(v)]  # type: ignore[union-attr]


def runall(
    model_or_file: ModelArg,
    calibrated_data: object,
    save_dir: str | os.PathLike[str] = "./debug_result/",
    ns_metrics: str | Sequence[str] = "cosine-similarity",
    output_node: object = None,
    node_type: object = None,
    data_num: int | None = 1,
    verbose: bool = False,
    interested_nodes: object = None,
    dis_nodes_list: object = None,
    cw_nodes_list: object = None,
    axis: int | None = None,
    quantize_node: object = None,
    non_quantize_node: object = None,
    ae_metric: str = "cosine-similarity",
    average_mode: bool = False,
    pick_threshold: float = 0.999,
    sensitive_nodes: object = None,
    *,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    progress: Progress | ProgressFactory | None = None,
    report: bool = True,
    cache: bool = True,
    workers: int | None = None,
    executor: str | None = None,
) -> RunResult:
    """Run every analysis (reference §6) and write the original's tree, ``results.json`` and ``index.html``.

    Steps: node sensitivity per ``node_type`` (default weight, then activation) → distributions and
    channel-wise box plots of the top 5 of each → cumulative error curves (default: only weight /
    only activation / both) → partial quantization of the nodes at or below ``pick_threshold`` →
    the verdict. Returns a :class:`RunResult`.
    """
    t_start = time.perf_counter()
    metrics = [m.name for m in get_metrics(ns_metrics)]
    get_metrics(ae_metric)
    types = _node_types(node_type)
    if any(k in _flatten(non_quantize_node) for k in KEYWORDS):
        raise OptionError("In acc_error section, cannot set 'non_quantize_node' to 'weight' or 'activation'; "
                          "use quantize_node=['weight','activation'] for those curves")
    root = ensure_dir(save_dir)
    renderer = Renderer()  # worker processes start drawing figures while the engine computes
    try:
        return _run(root, renderer, t_start, model_or_file, calibrated_data, metrics, output_node, types, data_num, verbose,
                    interested_nodes, dis_nodes_list, cw_nodes_list, axis, quantize_node, non_quantize_node, ae_metric,
                    average_mode, pick_threshold, sensitive_nodes, float_model, providers, progress, report, cache,
                    workers, executor)
    finally:
        renderer.close()


def _run(root: Path, renderer: Renderer, t_start: float, model_or_file: ModelArg, calibrated_data: object,
         metrics: list[str], output_node: object, types: list[str], data_num: int | None, verbose: bool,
         interested_nodes: object, dis_nodes_list: object, cw_nodes_list: object, axis: int | None,
         quantize_node: object, non_quantize_node: object, ae_metric: str, average_mode: bool, pick_threshold: float,
         sensitive_nodes: object, float_model: FloatModelArg, providers: str | Sequence[str] | None,
         progress: Progress | ProgressFactory | None, report: bool, cache: bool, workers: int | None,
         executor: str | None) -> RunResult:
    ctx = context_for(model_or_file, calibrated_data, float_model, providers, cache, workers, executor)
    ctx.samples(data_num)
    timing: dict[str, float] = {}
    notes = list(ctx.model.notes)
    written: list[Path] = []

    # 1. node sensitivity
    t = time.perf_counter()
    sens: dict[str, SensitivityResult] = {}
    nodes_list: list[str] = []
    for kind in types:
        if kind == "weight" and ctx.model.weight_quantizers and not [q for q in ctx.model.weight_quantizers if q.exact]:
            notes.append("weight sensitivity skipped: weights are stored as integers and no float model was given (--float-model)")
            continue
        result = sensitivity_of_nodes(ctx, metrics=metrics, output_node=output_node, node_type=kind, data_num=data_num,
                                      interested_nodes=interested_nodes, progress=step_progress(progress, f"Sensitivity of {kind} nodes"))
        sens[kind] = result
        if verbose:
            show_info(info_table("node sensitivity", kind, sensitivity_rows(result, rounded=True)))
        written += write_sensitivity(result, root / "node_sensitivity")
        top = [e.name for e in result.top(TOP_K)]
        if kind == "node":
            top = list(ctx.model.expand(top))
        nodes_list += [n for n in top if n not in nodes_list]
    timing["node_sensitivity_s"] = time.perf_counter() - t

    # 2-3. distributions and channel-wise box plots
    t = time.perf_counter()
    dis = distributions(ctx, dis_nodes_list if dis_nodes_list is not None else nodes_list) if (dis_nodes_list or nodes_list) else []
    written += write_distributions(dis, root / "data_distribution", renderer)
    timing["data_distribution_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cw = channel_boxes(ctx, cw_nodes_list if cw_nodes_list is not None else nodes_list, axis) if (cw_nodes_list or nodes_list) else []
    written += write_channel_boxes(cw, root / "channelwise_distribution", renderer)
    timing["channelwise_distribution_s"] = time.perf_counter() - t

    # 4. cumulative error curves
    t = time.perf_counter()
    if quantize_node is None and non_quantize_node is None:
        quantize_node = ["weight", "activation"]
    acc = accumulate_errors(ctx, quantize_node, non_quantize_node, ae_metric)
    written += write_accumulate_error(acc, root / "accumulate_error", average_mode, renderer)
    timing["accumulate_error_s"] = time.perf_counter() - t

    # 5. partial quantization (reusing the node sweep when there is one)
    t = time.perf_counter()
    if "node" in sens and "cosine-similarity" in metrics and not sensitive_nodes:
        sensitive_nodes = pick_sensitive(sens["node"], "cosine-similarity", pick_threshold) or None
    node_sweep = sens.get("node")
    if not sensitive_nodes and node_sweep is None:
        node_sweep = sensitivity_of_nodes(ctx, metrics="cosine-similarity", node_type="node", data_num=data_num,
                                          progress=step_progress(progress, "Sensitivity of nodes"))
    partial = run_sensitivity_analysis(ctx, pick_threshold=pick_threshold, data_num=data_num, sensitive_nodes=sensitive_nodes,
                                       node_sweep=node_sweep, progress=progress)
    written += write_partial(partial, root / "sensitivity_analysis", renderer)
    timing["sensitivity_analysis_s"] = time.perf_counter() - t

    t = time.perf_counter()
    judged = verdict(ctx, partial, data_num)
    timing["verdict_s"] = time.perf_counter() - t
    all_sens = dict(sens)
    if node_sweep is not None and "node" not in all_sens:
        all_sens["node"] = node_sweep
    timing["total_s"] = time.perf_counter() - t_start

    rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731
    results: dict[str, Any] = {
        "ptqdebug_version": __version__,
        "model": {"path": ctx.model.path, "format": ctx.model.source_format,
                  "calibration_nodes": {"weight": len(ctx.model.weight_quantizers), "activation": len(ctx.model.activation_quantizers)},
                  "notes": notes, "inputs": [f"{s.name} {s.describe()}" for s in ctx.model.inputs], "outputs": list(ctx.model.outputs)},
        "data": {"source": ctx.data.source, "samples_used": len(ctx.samples(data_num)), "samples_total": len(ctx.data)},
        "verdict": judged.to_dict(),
        "sensitivity": {k: v.to_dict() for k, v in all_sens.items()},
        "accumulate_error": [{**r.to_dict(), "image": f"accumulate_error/{acc_error_png(r.prefix, r.metric, average_mode)}"} for r in acc],
        "partial_quantization": {**partial.to_dict(), "image": "sensitivity_analysis/partial_quantization.png"},
        "distributions": [{**d.summary(), "image": f"data_distribution/{distribution_png(d)}"} for d in dis],
        "channelwise": [{**b.summary(), "image": f"channelwise_distribution/{boxplot_png(b.name)}"} for b in cw],
        "timing": timing,
    }
    results["files"] = [rel(p) for p in written] + ["results.json"] + (["index.html"] if report else [])
    written.append(dump_json(root / "results.json", results))
    renderer.close()  # the report embeds the figures: they must be on disk
    if report:
        from ..report.html import write_report

        written.append(write_report(results, root))
    for kind, r in all_sens.items():
        logger.info("most sensitive %s nodes: %s", kind, ", ".join(e.name for e in r.top(3)))
    logger.info("wrote %d files under %s", len(written), root)
    return RunResult(root, all_sens, tuple(dis), tuple(cw), tuple(acc), partial, judged, tuple(written), results, tuple(notes),
                     ctx.cache.hits)
