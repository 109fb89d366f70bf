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

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..analyses.accumulate import AccumulateErrorResult
from ..analyses.candidates import NODE_TYPES, group_members
from ..analyses.deployment import DeploymentCheck, check_recommendation, deployable
from ..analyses.deployment import check_deployment as run_deployment_check
from ..analyses.distribution import (
    ChannelBoxes,
    Distribution,
    ValuesMemo,
    channel_boxes,
    distributions,
)
from ..analyses.local import LocalErrorResult, local_errors, local_units
from ..analyses.lost import lost_channels
from ..analyses.partial import PartialQuantizationResult, partial_quantization
from ..analyses.sensitivity import Progress, SensitivityResult
from ..analyses.verdict import Verdict, verdict
from ..context import Context
from ..metrics import MetricLike
from ..model import CalibratedModel
from ..errors import OptionError
from ..plots.render import Renderer
from ..report.files import StagedOutput, dump_json
from ..report.names import acc_error_png, boxplot_png, distribution_png
from ..report.sensitivity_files import write_sensitivity
from ..report.tables import info_table, sensitivity_rows
from .analysis import pick_sensitive, run_sensitivity_analysis, write_partial
from .checks import (
    CURVES,
    check_bool,
    check_axis,
    check_data_num,
    check_metric,
    check_metrics,
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
    runtime_errors,
    show_info,
    step_progress,
)
from .early_figures import Figures
from .figures import (
    accumulate_errors,
    check_acc_nodes,
    write_accumulate_error,
    write_channel_boxes,
    write_distributions,
)
from .sensitivity import sensitivity_of_nodes

__all__ = ["RunResult", "runall"]

TOP_K = 5


#: runall's closing lines (what it wrote, the most sensitive nodes): the command line prints its
#: own, fuller ones and silences this logger
closing = logging.getLogger("ptqdebug.summary")


@dataclass(frozen=True, eq=False, repr=False)
class RunResult:
    """Everything ``runall`` computed and wrote; ``results`` is what ``results.json`` holds.

    Start with ``verdict`` (``verdict.summary``; ``verdict.keep_float`` / ``keep_int16``: what to
    keep in higher precision, ``verdict.recommendations``: the rows behind it); ``sensitivities``
    maps ``"weight"``, ``"activation"`` and ``"node"`` to the sweeps (``.as_mapping()``, ``.top(k)``);
    ``partial`` (and ``partial_int16``) is partial quantization; ``accumulate``,
    ``distributions`` and ``channelwise`` are the figures' numbers; ``files`` what was written
    under ``save_dir``; ``notes`` what the run noticed or skipped.
    """

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
    local_error: LocalErrorResult | None = None  # of the nodes the verdict recommends (None: none recommended)
    partial_int16: PartialQuantizationResult | None = None  # partial quantization's nodes in int16 (None: no nodes)
    deployment: DeploymentCheck | None = None  # with check_deployment=True
    #: with check_deployment=True, the recommended models' checks: "float32" (verdict.keep_float in
    #: float), "int16" (verdict.keep_int16's activations in int16), where recommended
    fix_deployment: Mapping[str, DeploymentCheck] = field(default_factory=dict)

    def __repr__(self) -> str:  # the full results run to hundreds of kilobytes
        sweeps = ", ".join(f"{k}: {len(v.entries)}" for k, v in self.sensitivities.items())
        return (f"RunResult(save_dir={str(self.save_dir)!r}, cause={self.verdict.cause!r}, "
                f"calibrated={self.verdict.scores.get('calibrated', float('nan')):.6f}, keep_float={list(self.verdict.keep_float)}, "
                f"sweeps={{{sweeps}}}, files={len(self.files)})")


def _node_types(node_type: object) -> list[str]:
    if node_type is None:
        return ["weight", "activation"]
    if not isinstance(node_type, (str, list, tuple)):
        raise OptionError(f"node_type {node_type!r} is not valid; expected None (weight and activation) or {', '.join(NODE_TYPES)}")
    types = [node_type] if isinstance(node_type, str) else list(node_type)
    types = [t.strip("'\" ") if isinstance(t, str) else t for t in types]
    bad = [t for t in types if t not in NODE_TYPES]
    if bad or not types:
        raise OptionError(f"node_type {node_type!r} is not valid; expected None (weight and activation) or {', '.join(NODE_TYPES)}")
    return list(dict.fromkeys(types))


def runall(
    model_or_file: ModelArg,
    calibrated_data: object,
    save_dir: str | os.PathLike[str] = "./debug_result/",
    ns_metrics: MetricLike | Sequence[MetricLike] = "cosine-similarity",
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
    ae_metric: MetricLike = "cosine-similarity",
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
    check_deployment: bool = False,
) -> RunResult:
    """Run every analysis (reference §6) and write the original's tree, ``results.json`` and ``index.html``.

    Steps: node sensitivity per ``node_type`` (default weight, then activation) → distributions and
    channel-wise box plots of the top 5 of each → cumulative error curves (default: only weight /
    only activation / both) → partial quantization of the nodes at or below ``pick_threshold`` →
    the verdict. Returns a :class:`RunResult`.

    With ``check_deployment=True`` it also runs the model as ONNX Runtime deploys it and says
    whether that agrees with the simulation the analyses describe
    (:func:`ptqdebug.api.check_deployment`, on the same samples), and does the same for the
    models it recommends (``fix_deployment``: the model ``export`` writes for
    ``verdict.keep_float``, and for ``verdict.keep_int16``).
    """
    t_start = time.perf_counter()
    # 1. every option that needs nothing else, before reading anything
    metrics = check_metrics(ns_metrics, "ns_metrics")
    ae_metric = check_metric(ae_metric, "ae_metric", CURVES)
    types = _node_types(node_type)
    data_num = check_data_num(data_num)
    axis = check_axis(axis)
    pick_threshold = check_pick_threshold(pick_threshold)
    check_progress(progress)
    lists = _node_lists(output_node, interested_nodes, dis_nodes_list, cw_nodes_list, sensitive_nodes)
    for value, what, expand in lists:
        check_node_list(None, value, what, expand=expand)
    check_acc_nodes(None, quantize_node, non_quantize_node)  # also: no 'weight'/'activation' in non_quantize_node
    check_save_dir(save_dir, calibrated_data, model_or_file)
    verbose, average_mode, report, check_deployment = (check_bool(v, name) for v, name in (
        (verbose, "verbose"), (average_mode, "average_mode"), (report, "report"), (check_deployment, "check_deployment")))
    # 2. the model and the data, then every option that needs them, before the first file; the
    # figure worker starts first, so that it imports matplotlib while the model is read
    with Renderer() as renderer:  # killed on any error
        ctx = context_for(model_or_file, calibrated_data, float_model, providers, cache, workers, executor)
        for value, what, expand in lists:
            check_node_list(ctx.model, value, what, expand=expand)
        check_acc_nodes(ctx, quantize_node, non_quantize_node)
        if check_deployment:
            deployable(ctx)  # a model ONNX Runtime cannot deploy fails now, not after the analyses
        for i in range(len(ctx.samples(data_num))):
            ctx.data[i]  # reads and checks every selected sample's values (NaN, inf) now, not mid-run
        # 3. compute and write into a staging folder; move the files into save_dir only at the end
        with StagedOutput(save_dir) as stage:
            try:
                with runtime_errors(ctx, data_num):
                    run = _run(stage.root, renderer, t_start, ctx, metrics, output_node, types, data_num, verbose,  # type: ignore[arg-type]
                               interested_nodes, dis_nodes_list, cw_nodes_list, axis, quantize_node, non_quantize_node,
                               ae_metric, average_mode, pick_threshold, sensitive_nodes, progress, report, check_deployment)
            except BaseException:
                renderer.__exit__(*sys.exc_info())  # stop the figure workers before the staging folder goes
                raise
            previous = _previous_files(stage.final)
            files = stage.commit(then=lambda: _remove_stale(stage.final, previous - set(run.results["files"])))
    closing.info("wrote %d files under %s", len(files), stage.final)
    return replace(run, save_dir=stage.final, files=tuple(stage.final / f for f in run.results["files"]))


def _node_lists(output_node: object, interested_nodes: object, dis_nodes_list: object, cw_nodes_list: object,
                sensitive_nodes: object) -> list[tuple[object, str, bool]]:
    """(value, option name, whether its names switch calibration nodes) of runall's node lists."""
    return [(output_node, "output_node", False), (interested_nodes, "interested_nodes", True),
            (dis_nodes_list, "dis_nodes_list", False), (cw_nodes_list, "cw_nodes_list", True),
            (sensitive_nodes, "sensitive_nodes", True)]


#: What ``runall`` writes: only files under these names are ever removed as stale.
_OWN_FOLDERS = ("node_sensitivity", "data_distribution", "channelwise_distribution", "accumulate_error", "sensitivity_analysis")
_OWN_SUFFIXES = (".png", ".json", ".log", ".html")


def _graph(model: CalibratedModel) -> dict[str, Any]:
    """The graph for the report's map: ``nodes`` as ``[name, op_type, has calibration nodes]``,
    the ordinary nodes in topological order then the calibration nodes no node reads (node-sweep
    candidates too, as ``QuantizeLinear``), ``edges`` as index pairs
    (:meth:`CalibratedModel.node_edges`), ``fixed`` the indices of the nodes that compute only
    from shapes and constants (:meth:`CalibratedModel.fixed_nodes`)."""
    nodes = ([[n, model.node_types[n], bool(model.node_quantizers.get(n))] for n in model.node_outputs]
             + [[q, "QuantizeLinear", True] for q in model.unowned_quantizers])
    index = {n[0]: i for i, n in enumerate(nodes)}
    fixed = model.fixed_nodes()
    return {"nodes": nodes, "edges": [[index[a], index[b]] for a, b in model.node_edges()],
            "fixed": [i for i, n in enumerate(nodes) if n[0] in fixed]}


def _previous_files(root: Path) -> set[str]:
    """The files an earlier runall recorded in ``root/results.json`` (empty if none or unreadable)."""
    try:
        old = json.loads((root / "results.json").read_text(encoding="utf-8"))
        files = old["files"] if isinstance(old, dict) and "ptqdebug_version" in old else []
        return {f for f in files if isinstance(f, str)}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _remove_stale(root: Path, stale: set[str]) -> None:
    """Delete files an earlier run wrote and this one did not (e.g. figures of nodes that are no
    longer the most sensitive), so save_dir matches results.json. Only paths inside runall's own
    sub-folders with its own suffixes are touched; anything else in save_dir is the user's."""
    base = root.resolve()
    for rel in sorted(stale):
        parts = Path(rel).parts
        if len(parts) != 2 or parts[0] not in _OWN_FOLDERS or not rel.endswith(_OWN_SUFFIXES):
            continue
        path = root / rel
        if path.is_symlink() or not path.is_file() or path.resolve().parent.parent != base:
            continue
        path.unlink(missing_ok=True)


def _run(root: Path, renderer: Renderer, t_start: float, ctx: Context,
         metrics: list[str], output_node: object, types: list[str], data_num: int | None, verbose: bool,
         interested_nodes: object, dis_nodes_list: object, cw_nodes_list: object, axis: int | None,
         quantize_node: object, non_quantize_node: object, ae_metric: str, average_mode: bool, pick_threshold: float,
         sensitive_nodes: object, progress: Progress | ProgressFactory | None, report: bool, deploy: bool) -> RunResult:
    timing: dict[str, float] = {"data_distribution_s": 0.0, "channelwise_distribution_s": 0.0}
    notes = list(ctx.model.notes)
    written: list[Path] = []
    dis_dir, cw_dir = root / "data_distribution", root / "channelwise_distribution"
    figures = Figures()
    # the top weights' figures are drawn while the next sweeps run, where that changes nothing:
    # sweeps of calibration nodes (not of nodes, whose top nodes expand, nor of user groups)
    early = interested_nodes is None and "node" not in types

    # 1. node sensitivity
    t = time.perf_counter()
    sens: dict[str, SensitivityResult] = {}
    nodes_list: list[str] = []
    for kind in types:
        if kind == "weight" and ctx.model.weight_quantizers and not [q for q in ctx.model.weight_quantizers if q.exact]:
            notes.append(f"weight sensitivity skipped: weights are stored as integers and {ctx.model.fixed_reason}")
            continue
        result = sensitivity_of_nodes(ctx, metrics=metrics, output_node=output_node, node_type=kind, data_num=data_num,
                                      interested_nodes=interested_nodes, progress=step_progress(progress, f"Sensitivity of {kind} nodes"))
        sens[kind] = result
        if verbose:
            show_info(info_table("node sensitivity", kind, sensitivity_rows(result, rounded=True)))
        written += write_sensitivity(result, root / "node_sensitivity")
        # the calibration nodes of the worst candidates (an ordinary node's, or a group's, with interested_nodes)
        top = list(dict.fromkeys(q for e in result.top(TOP_K) for q in e.quantizers))
        top = [n for n in top if ctx.model.data_visible(n)]  # data inside a body cannot be shown (ptqdebug.bodies)
        new = [n for n in top if n not in nodes_list]
        nodes_list += new
        if early and kind == "weight" and new:
            t2 = time.perf_counter()
            if dis_nodes_list is None:
                figures.draw_early("distribution", distributions(ctx, new), dis_dir, renderer)
            t3 = time.perf_counter()
            if cw_nodes_list is None:
                figures.draw_early("channel_boxes", channel_boxes(ctx, new, axis), cw_dir, renderer)
            timing["data_distribution_s"] += t3 - t2
            timing["channelwise_distribution_s"] += time.perf_counter() - t3
    timing["node_sensitivity_s"] = time.perf_counter() - t - timing["data_distribution_s"] - timing["channelwise_distribution_s"]
    # output channels rounded away (the verdict says so first): their calibration nodes are drawn too
    lost = lost_channels(ctx, range(len(ctx.samples(data_num))))
    nodes_list += [x.quantizer for x in lost if x.quantizer not in nodes_list]

    # 2-3. distributions and channel-wise box plots
    t = time.perf_counter()
    memo: ValuesMemo = {}  # the box plots of the same activations reuse the distributions' values
    if dis_nodes_list is not None:
        dis = distributions(ctx, dis_nodes_list, memo) if dis_nodes_list else []
        written += write_distributions(dis, dis_dir, renderer)
    else:
        rest = figures.rest("distribution", nodes_list)
        dis = figures.merge("distribution", nodes_list, distributions(ctx, rest, memo) if rest else [])
        written += figures.write("distribution", dis, dis_dir, renderer)
    timing["data_distribution_s"] += time.perf_counter() - t
    t = time.perf_counter()
    if cw_nodes_list is not None:
        cw = channel_boxes(ctx, cw_nodes_list, axis, memo) if cw_nodes_list else []
        written += write_channel_boxes(cw, cw_dir, renderer)
    else:
        rest = figures.rest("channel_boxes", nodes_list)
        cw = figures.merge("channel_boxes", nodes_list, channel_boxes(ctx, rest, axis, memo) if rest else [])
        written += figures.write("channel_boxes", cw, cw_dir, renderer)
    del memo
    timing["channelwise_distribution_s"] += time.perf_counter() - t

    # 4. cumulative error curves
    t = time.perf_counter()
    if quantize_node is None and non_quantize_node is None:
        quantize_node = ["weight", "activation"]
    acc = accumulate_errors(ctx, quantize_node, non_quantize_node, ae_metric, data_num)  # (the original: one sample)
    written += write_accumulate_error(acc, root / "accumulate_error", average_mode, renderer)
    timing["accumulate_error_s"] = time.perf_counter() - t

    # 5. partial quantization (reusing the node sweep when there is one)
    t = time.perf_counter()
    if "node" in sens and "cosine-similarity" in metrics and not sensitive_nodes:
        groups = group_members(interested_nodes)  # a group picked ("a+b") stands for its members
        picked = pick_sensitive(sens["node"], "cosine-similarity", pick_threshold)
        sensitive_nodes = list(dict.fromkeys(n for name in picked for n in groups.get(name, [name]))) or None
    node_sweep = sens.get("node")
    if not sensitive_nodes and node_sweep is None:
        node_sweep = sensitivity_of_nodes(ctx, metrics="cosine-similarity", node_type="node", data_num=data_num,
                                          progress=step_progress(progress, "Sensitivity of nodes"))
    partial = run_sensitivity_analysis(ctx, pick_threshold=pick_threshold, data_num=data_num, sensitive_nodes=sensitive_nodes,
                                       node_sweep=node_sweep, progress=progress)
    written += write_partial(partial, root / "sensitivity_analysis", renderer)
    timing["sensitivity_analysis_s"] = time.perf_counter() - t

    # the same nodes with their activations in int16 instead of float (the original toolchain's other
    # remedy): only where partial quantization has nodes, and only where int16 can describe them
    t = time.perf_counter()
    partial16 = None
    if partial.nodes or partial.left_out:  # (in int16, the nodes float leaves out are a partial quantization still)
        try:
            partial16 = partial_quantization(ctx, [*partial.nodes, *partial.left_out], pick_threshold=pick_threshold, data_num=data_num,
                                             progress=step_progress(progress, "int16"), qtype="int16")
        except OptionError as exc:
            notes.append(f"int16 scores skipped: {exc}")
    timing["int16_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ranking = ([e.scores["cosine-similarity"] for e in node_sweep.entries]  # (for a threshold to suggest)
               if node_sweep is not None and "cosine-similarity" in node_sweep.metrics
               and tuple(node_sweep.compared) == tuple(ctx.model.outputs) else [])
    judged = verdict(ctx, partial, data_num, partial16, ranking, lost)
    timing["verdict_s"] = time.perf_counter() - t
    # the local error of each node the verdict recommends (a segment run each; none when nothing is
    # recommended): is the node's own quantization lossy, or does the network amplify a small error?
    t = time.perf_counter()
    units = local_units(ctx.model)
    recommended = [r.node for r in judged.recommendations if r.node in units]
    local = local_errors(ctx, recommended, (judged.metric,), data_num, step_progress(progress, "Local error")) if recommended else None
    timing["local_error_s"] = time.perf_counter() - t
    deployment, fixes = None, {}
    if deploy:
        t = time.perf_counter()
        deployment = run_deployment_check(ctx, (judged.metric,), data_num, step_progress(progress, "Deployment check"))
        for qtype, nodes in (("float32", judged.keep_float), ("int16", judged.keep_int16)):
            if nodes:  # the fixes too: an int16 one can deploy unlike its simulation
                fixes[qtype] = check_recommendation(ctx, nodes, qtype, (judged.metric,), data_num,
                                                    step_progress(progress, f"Deployment check ({qtype} fix)"))
        timing["deployment_s"] = time.perf_counter() - t
    all_sens = dict(sens)
    if node_sweep is not None and "node" not in all_sens:
        all_sens["node"] = node_sweep
    timing["total_s"] = time.perf_counter() - t_start

    rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731
    results: dict[str, Any] = {
        "ptqdebug_version": __version__,
        "model": {"path": ctx.model.path, "format": ctx.model.source_format,
                  "calibration_nodes": {"weight": len(ctx.model.weight_quantizers), "activation": len(ctx.model.activation_quantizers)},
                  "notes": notes, "inputs": [f"{s.name} {s.describe()}" for s in ctx.model.inputs], "outputs": list(ctx.model.outputs),
                  "float_model": ctx.model.float_source, "unowned": list(ctx.model.unowned_quantizers),
                  # names ptqdebug gave unnamed nodes, among those recommended (calibrate cannot take them)
                  "renamed": sorted(ctx.model.auto_named.intersection(judged.keep_float)),
                  "not_in_float": sorted(ctx.model.not_in_float.intersection(judged.keep_float))},
        "data": {"source": ctx.data.source.strip("'"), "samples_used": len(ctx.samples(data_num)), "samples_total": len(ctx.data)},
        "verdict": judged.to_dict(),
        "sensitivity": {k: v.to_dict() for k, v in all_sens.items()},
        "graph": _graph(ctx.model),
        "accumulate_error": [{**r.to_dict(), "image": f"accumulate_error/{acc_error_png(r.prefix, r.metric, average_mode)}"} for r in acc],
        "partial_quantization": {**partial.to_dict(), "image": "sensitivity_analysis/partial_quantization.png"},
        "partial_quantization_int16": partial16.to_dict() if partial16 is not None else None,
        "local_error": local.to_dict() if local is not None else None,
        "deployment": deployment.to_dict() if deployment is not None else None,
        "fix_deployment": {qtype: check.to_dict() for qtype, check in fixes.items()},
        "distributions": [{**d.summary(), "image": f"data_distribution/{distribution_png(d, dis)}"} for d in dis],
        "channelwise": [{**b.summary(), "image": f"channelwise_distribution/{boxplot_png(b.name, [x.name for x in cw])}"}
                        for b in cw],
        "timing": timing,
    }
    results["files"] = [rel(p) for p in written] + ["results.json"] + (["index.html"] if report else [])
    written.append(dump_json(root / "results.json", results))
    renderer.close()  # the report embeds the figures: they must be on disk
    figures.rename()
    if report:
        from ..report.html import write_report

        written.append(write_report(results, root))
    for kind, r in all_sens.items():
        closing.info("most sensitive %snodes: %s", "" if kind == "node" else kind + " ",
                     ", ".join(e.name for e in r.top(3)) or "none")
    if deployment is not None:
        closing.info("%s", deployment.summary())
    return RunResult(root, all_sens, tuple(dis), tuple(cw), tuple(acc), partial, judged, tuple(written), results, tuple(notes),
                     ctx.cache.hits, local, partial16, deployment, fixes)
