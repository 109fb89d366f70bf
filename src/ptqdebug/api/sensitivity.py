"""``get_sensitivity_of_nodes`` (reference §3), and ``local_errors`` beside it."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..analyses.candidates import candidates_for, check_node_type, flat_names, normalize_node_list
from ..analyses.local import LocalErrorResult, local_units
from ..analyses.local import local_errors as _local_errors
from ..analyses.sensitivity import Progress, SensitivityResult, node_sensitivity
from ..context import Context
from ..errors import OptionError
from ..metrics import MetricLike, get_metrics
from ..report.sensitivity_files import write_sensitivity
from ..report.tables import info_table, sensitivity_rows
from .checks import check_bool, check_data_num, check_metrics, check_node_list, check_progress, check_save_dir
from .common import FloatModelArg, ModelArg, context_for, runtime_errors, show_info

__all__ = ["compare_tensors", "get_sensitivity_of_nodes", "local_errors", "sensitivity_of_nodes"]


def compare_tensors(ctx: Context, output_node: object) -> tuple[str, ...] | None:
    """The tensors an ``output_node`` option stands for (None: the model outputs)."""
    if output_node is None:
        return None
    names = normalize_node_list(output_node, "output_node")
    flat = [n for item in names for n in ([item] if isinstance(item, str) else item)]
    if not flat:
        raise OptionError("output_node is an empty list; expected a node name (or None for the model outputs)")
    return tuple(dict.fromkeys(t for n in flat for t in ctx.model.tensors_of(n)))


def sensitivity_of_nodes(
    ctx: Context,
    *,
    metrics: MetricLike | Sequence[MetricLike] = "cosine-similarity",
    output_node: object = None,
    node_type: str = "node",
    data_num: int | None = 1,
    interested_nodes: object = None,
    progress: Progress | None = None,
) -> SensitivityResult:
    """The typed sweep behind :func:`get_sensitivity_of_nodes` (no printing, no files)."""
    check_node_type(node_type)
    mets = check_metrics(metrics)
    ctx.samples(data_num)
    candidates = candidates_for(ctx.model, node_type, interested_nodes)
    compare_at = compare_tensors(ctx, output_node)
    key = None
    chosen = get_metrics(mets)
    code = [m.fingerprint for m in chosen]  # a user's metric file: its bytes
    # nothing to key by for a function of this process, nor for labels a metric reads by sample index
    if ctx.cache.enabled and None not in code and not any(m.takes_sample for m in chosen):
        options: dict[str, object] = {"node_type": node_type, "metrics": mets, "compare_at": compare_at,
                   "candidates": [[c.name, list(c.quantizers)] for c in candidates]}
        if any(code):
            options["metric_code"] = code
        left_out = ctx.model.integer_outputs.intersection(compare_at or ctx.model.outputs)
        if left_out:  # (left out of the averages since stop 16: not the entries cached before)
            options["integer_outputs_left_out"] = sorted(left_out)
        key = ctx.cache.key("sensitivity", ctx.sample_digests(data_num), options)
        hit = ctx.cache.get(key)
        if hit is not None:
            return SensitivityResult.from_dict(hit)
    result = node_sensitivity(ctx, candidates, metrics=mets, compare_at=compare_at,
                              node_type=node_type, data_num=data_num, progress=progress)
    if key is not None:
        ctx.cache.put(key, result.to_dict())
    return result


def get_sensitivity_of_nodes(
    model_or_file: ModelArg,
    metrics: MetricLike | Sequence[MetricLike] = "cosine-similarity",
    calibrated_data: object = None,
    output_node: object = None,
    node_type: str = "node",
    data_num: int | None = 1,
    verbose: bool = False,
    interested_nodes: object = None,
    save_dir: str | os.PathLike[str] | None = None,
    *,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    progress: Progress | None = None,
    cache: bool = True,
    workers: int | None = None,
    executor: str | None = None,
) -> dict[str, dict[str, float]]:
    """Quantization sensitivity of nodes, most sensitive first (reference §3).

    For each candidate — an ordinary node (``node_type="node"``: all calibration nodes on its
    inputs together), a weight or an activation calibration node — only that candidate is
    quantized and the model outputs (or ``output_node``'s outputs) are compared with the float
    model by each metric, averaged over the first ``data_num`` samples (None: all).

    Args:
        model_or_file: the calibrated model (path, ModelProto, or a loaded model).
        metrics: one name or a list of ``cosine-similarity``, ``mse``, ``mre``, ``sqnr``,
            ``chebyshev``, or your own (a function ``f(reference, actual) -> float``, or
            ``f(reference, actual, sample)`` to score against labels, or ``"file.py:function"``;
            see :mod:`ptqdebug.metrics`); the ranking follows the first, ties the next.
        calibrated_data: the calibration data (``calibration_data/`` folder, ``.npz``, reader...).
        output_node: compare at this node's outputs (or several nodes') instead of the model's.
        node_type: ``"node"``, ``"weight"`` or ``"activation"`` (or the original's undocumented
            ``"tae"``: the activation calibration nodes a Conv, MatMul, Gemm or ConvTranspose reads).
        data_num: how many samples (the first ones); None or ``"all"`` for all.
        verbose: log the ranked table (reference §3.5) at INFO level.
        interested_nodes: candidates to score instead of all: names, or nested lists (one group
            each, keyed by the names joined with ``+``).
        save_dir: if set, also write ``sensitivity_of_<node_type>.log`` and ``.json`` there.
        float_model: the float model, for QDQ models that store weights as integers.
        providers: ONNX Runtime execution providers (default CPU).
        progress: called as ``progress(done, total)`` during the sweep.
        cache: reuse (and store) the result from ptqdebug's results cache (:mod:`ptqdebug.cache`).
        workers: score candidates in this many processes (:mod:`ptqdebug.parallel`).
        executor: ``"local"`` (default) or ``"ray"`` to spread candidates over a Ray cluster.

    Returns:
        ``{name: {metric: value}}`` in ranked order (worst first). Candidates whose quantization
        makes an output NaN/inf come first with NaN values.
    """
    metrics = check_metrics(metrics)
    verbose = check_bool(verbose, "verbose")
    check_node_type(node_type)
    data_num = check_data_num(data_num)
    check_progress(progress)
    check_node_list(None, interested_nodes, "interested_nodes", expand=True)
    check_node_list(None, output_node, "output_node", expand=False)
    if save_dir is not None:
        check_save_dir(save_dir, calibrated_data, model_or_file)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers, cache, workers, executor)
    with runtime_errors(ctx, data_num):
        result = sensitivity_of_nodes(ctx, metrics=metrics, output_node=output_node, node_type=node_type,
                                      data_num=data_num, interested_nodes=interested_nodes, progress=progress)
    if verbose:
        show_info(info_table("node sensitivity", node_type, sensitivity_rows(result, rounded=True)))
    if save_dir is not None:
        write_sensitivity(result, save_dir)
    return result.as_mapping()


def local_errors(
    model_or_file: ModelArg,
    calibrated_data: object,
    nodes: object = None,
    metrics: MetricLike | Sequence[MetricLike] = "cosine-similarity",
    data_num: int | None = 1,
    *,
    float_model: FloatModelArg = None,
    providers: str | Sequence[str] | None = None,
    progress: Progress | None = None,
) -> LocalErrorResult:
    """Each ordinary node's error at its own outputs, without propagation (not in the original).

    Only the node's calibration nodes are on and everything upstream is float, so the score says
    how lossy the node's own quantization is; beside the node's sensitivity (the same
    quantization measured at the model outputs, :func:`get_sensitivity_of_nodes`) it tells a
    lossy node from one whose small error the network amplifies. See
    :mod:`ptqdebug.analyses.local`.

    Args:
        nodes: ordinary nodes, or calibration nodes no node reads (default: every candidate of a
            ``node_type="node"`` sweep).
        metrics, data_num, float_model, providers, progress: as for :func:`get_sensitivity_of_nodes`.

    Returns:
        A :class:`~ptqdebug.analyses.local.LocalErrorResult` in graph order;
        ``result.as_mapping()`` gives ``{node: {metric: value}}``.
    """
    mets = check_metrics(metrics, per_tensor="local errors")
    data_num = check_data_num(data_num)
    check_progress(progress)
    check_node_list(None, nodes, "nodes", expand=False)
    ctx = context_for(model_or_file, calibrated_data, float_model, providers, True, None, None)
    names = None
    if nodes is not None:
        check_node_list(ctx.model, nodes, "nodes", expand=False)
        names = flat_names(nodes, "nodes")
        units = list(local_units(ctx.model))
        plain = [n for n in names if n not in units]
        if plain:
            raise OptionError(f"nodes: {plain[0]!r} is not an ordinary node with calibration nodes (nor a calibration node "
                              f"no node reads); expected one of {', '.join(units[:5])}{', ...' if len(units) > 5 else ''}")
    ctx.samples(data_num)
    with runtime_errors(ctx, data_num):
        return _local_errors(ctx, names, mets, data_num, progress)
