"""The subcommands: each turns its arguments into one API call and prints what it found.

Flags follow the original ``hmct-debugger`` (reference §8.2), with ``--float-model`` and
``--providers`` added everywhere.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import api
from ..analyses.partial import apply_commands, check_command, unnamed_reason
from ..analyses.verdict import Verdict
from ..api.checks import check_metric, check_num_sample, check_pick_threshold, check_save_dir
from ..api.figures import check_acc_nodes
from ..errors import OptionError
from ..metrics import pick_direction
from ..model import CalibratedModel, load_model
from ..report.sensitivity_files import write_sensitivity
from ..report.tables import info_table, sensitivity_rows, shown
from .args import add_model_and_data, add_runtime, list_value, names_value, parse_bool
from .progress import ProgressBars, progress_bar

__all__ = ["register"]

_METRICS = "cosine-similarity, mse, mre, sqnr, chebyshev, or your own: path/to/file.py:function"


def data_num(text: str) -> int | None:
    if text.strip().lower() in ("none", "all"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; expected e.g. 1, 8 or 'all'") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..calibration import cli as calibration_cli

    p = sub.add_parser("demo", help="calibrate the bundled digits CNN, run every analysis, compare accuracy",
                       description="The whole journey on a small real model (a CNN trained on scikit-learn's digits).")
    p.add_argument("-o", "--out", default="demo_result", help="output folder (default: demo_result)")
    p.set_defaults(func=_demo)
    calibration_cli.register(sub)
    _register_runall(sub)
    p = sub.add_parser("get-sensitivity-of-nodes", help="rank nodes by how much quantizing each alone hurts the outputs",
                       description="Quantize one candidate at a time (everything else float) and rank by the error at the outputs.")
    add_model_and_data(p)
    p.add_argument("-m", "--metrics", type=list_value("--metrics"), default="cosine-similarity", help=f"one or a list of: {_METRICS}")
    p.add_argument("-o", "--output_node", type=list_value("--output_node"), help="compare at this node's outputs instead of the model outputs")
    p.add_argument("-n", "-nt", "--node_type", choices=["node", "weight", "activation", "tae"], default="node",
                   help="node: ordinary nodes (all their calibration nodes); weight / activation: calibration nodes; "
                        "tae: activation calibration nodes read by a Conv, MatMul, Gemm or ConvTranspose")
    p.add_argument("-d", "--data_num", type=data_num, default=1, help="how many samples, the first ones (default 1; 'all')")
    p.add_argument("-v", "--verbose", type=parse_bool, default=False, help="also show the node/threshold/bit columns (default false)")
    p.add_argument("-i", "--interested_nodes", type=list_value("--interested_nodes"), help="only these candidates: [a,b] or groups [[a,b],[c]]")
    p.add_argument("-s", "--save_dir", help="also write sensitivity_of_<node_type>.log and .json here")
    add_runtime(p)
    p.set_defaults(func=_sensitivity)

    p = sub.add_parser("plot-acc-error", help="cumulative error curves along the graph (needs -q or -nq)",
                       description="Error at every node's outputs against the float model, for chosen partial quantizations: "
                                   "give -q, -nq or both, e.g. -q \"['weight','activation']\".")
    add_model_and_data(p)
    p.add_argument("-s", "--save_dir", default="./debug_result/", help="output folder (default ./debug_result/)")
    # (-qn and -nqn as well: runall's spelling of the same options)
    p.add_argument("-q", "-qn", "--quantize_node", type=list_value("--quantize_node"),
                   help="['weight','activation'], names, or groups [[a],[a,b]] (-q or -nq is required)")
    p.add_argument("-nq", "-nqn", "--non_quantize_node", type=list_value("--non_quantize_node"),
                   help="names or groups to un-quantize (-q or -nq is required)")
    p.add_argument("-m", "--metric", default="cosine-similarity", help=f"{_METRICS} (default cosine-similarity)")
    p.add_argument("-a", "--average_mode", type=parse_bool, default=False, help="plot running means (default false)")
    p.add_argument("-d", "-dn", "--data_num", type=data_num, default=1,
                   help="average the curves over the first N samples (default 1, as the original; 'all')")
    add_runtime(p)
    p.set_defaults(func=_acc_error)

    for name, fn, help_ in (("plot-distribution", _distribution, "float vs quantized data histograms"),
                            ("get-channelwise-data-distribution", _channelwise, "per-channel box plots")):
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        add_model_and_data(p)
        p.add_argument("-s", "--save_dir", default="./debug_result/", help="output folder (default ./debug_result/)")
        p.add_argument("-n", "--nodes_list", type=list_value("--nodes_list"), required=True, help="names: [a,b]")
        if name.startswith("get-"):
            p.add_argument("-a", "--axis", type=int, default=None,
                           help="channel axis (default: a weight's own axis; for activations 1, or the last axis where a "
                                "MatMul or Gemm reads them: a transformer's hidden features)")
        add_runtime(p)
        p.set_defaults(func=fn)

    p = sub.add_parser("sensitivity-analysis", help="what un-quantizing the most sensitive nodes recovers",
                       description="Partial quantization: the calibrated model with the worst nodes un-quantized one by one.")
    add_model_and_data(p)
    p.add_argument("-p", "-pt", "--pick_threshold", type=float, default=0.999,  # (-pt: runall's spelling)
                   help="pick nodes scoring at or below this (default 0.999); at or above it for metrics where lower is "
                        "better (mse, mre, chebyshev), e.g. -m mse -p 1e-4")
    p.add_argument("-d", "--data_num", type=data_num, default=1, help="how many samples, the first ones (default 1; 'all')")
    p.add_argument("-sn", "--sensitive_nodes", type=list_value("--sensitive_nodes"), help="use these nodes instead of a sweep")
    p.add_argument("-sd", "-s", "--save_dir", default="./debug_result/", help="output folder (default ./debug_result/; -s as in the other commands)")
    p.add_argument("-m", "--metric", default="cosine-similarity", help=f"{_METRICS} (default cosine-similarity)")
    p.add_argument("-qt", "-q", "--qtype", choices=["float32", "int16"], default="float32",
                   help="what the sensitive nodes become: float32 (un-quantized, default) or int16 (their activations; "
                        "-q as in hmct)")
    p.add_argument("--order", choices=["sensitivity", "greedy"], default="sensitivity",
                   help="sensitivity: worst single score first (the original's); greedy: each next node the one that "
                        "adds most to those before it (often fewer nodes for the same score; n(n+1)/2 runs)")
    add_runtime(p)
    p.set_defaults(func=_partial)

    p = sub.add_parser("get-calibration-nodes-stat-info", help="thresholds, scales and per-channel ranges of calibration nodes",
                       description="Thresholds, scales, and per-channel max and min non-zero values of calibration nodes, "
                                   "written to cali_nodes_stat_info.json (with -v true, also printed and drawn).")
    add_model_and_data(p)
    p.add_argument("-n", "--nodes_list", type=list_value("--nodes_list"), help="names (default: every calibration node)")
    p.add_argument("-s", "--save_dir", default="./debug_result/", help="output folder (default ./debug_result/)")
    p.add_argument("-v", "--visualize", type=parse_bool, default=False, help="print the table and draw the figures (default false)")
    p.add_argument("-d", "--data_num", type=data_num, default=None, help="samples for activation statistics (default: all)")
    add_runtime(p)
    p.set_defaults(func=_stats)

    p = sub.add_parser("local-error", help="each node's error at its own outputs, without propagation (beyond the original)",
                       description="Only a node's own calibration nodes on, everything upstream float, compared at the node's "
                                   "outputs. A lossy node scores poorly here; a node whose small error the network amplifies "
                                   "scores well here and poorly in get-sensitivity-of-nodes.")
    add_model_and_data(p)
    p.add_argument("-m", "--metrics", type=list_value("--metrics"), default="cosine-similarity", help=f"one or a list of: {_METRICS}")
    p.add_argument("-n", "--nodes", type=list_value("--nodes"), help="ordinary nodes (default: every node with calibration nodes)")
    p.add_argument("-d", "--data_num", type=data_num, default=1, help="how many samples, the first ones (default 1; 'all')")
    add_runtime(p, sweeps=False)
    p.set_defaults(func=_local_error)

    p = sub.add_parser("select-sensitive-samples", help="the samples quantization hurts most, worst first (hmct's function)",
                       description="Scores the calibrated model against the float model on each sample, at the outputs, and "
                                   "lists the worst; with -s, writes them as calibration data (worst first, so -d 1 in the "
                                   "other commands takes the worst) and every sample's score as sample_sensitivity.json.")
    add_model_and_data(p)
    p.add_argument("-m", "--metric", default="cosine-similarity", help=f"{_METRICS} (default cosine-similarity)")
    p.add_argument("-n", "--num_sample", type=int, default=1, help="how many samples to select (default 1)")
    p.add_argument("-d", "--data_num", type=data_num, default=None, help="score the first N samples (default: all)")
    p.add_argument("-s", "--save_dir", help="write SAVE_DIR/calibration_data/ (the selected samples) and "
                                            "SAVE_DIR/sample_sensitivity.json")
    add_runtime(p, sweeps=False)
    p.set_defaults(func=_select_samples)

    p = sub.add_parser("check-deployment", help="whether ONNX Runtime runs the model as ptqdebug analyses it (beyond the original)",
                       description="Runs the calibrated model as deployed (ONNX Runtime's default optimizations, which fuse "
                                   "QDQ into integer kernels) and as ptqdebug simulates it (the model as ONNX defines it), "
                                   "and compares both with the float model at the outputs.")
    add_model_and_data(p)
    p.add_argument("-m", "--metrics", type=list_value("--metrics"), default="cosine-similarity", help=f"one or a list of: {_METRICS}")
    p.add_argument("-d", "--data_num", type=data_num, default=None, help="how many samples, the first ones (default: all)")
    add_runtime(p, sweeps=False)
    p.set_defaults(func=_check_deployment)

    p = sub.add_parser("export", help="write the calibrated model with some nodes in float or int16 (beyond the original)",
                       description="Writes the calibrated model with the calibration nodes of the --float-nodes switched off "
                                   "and the activation calibration nodes of the --int16-nodes in int16: exactly the "
                                   "configuration partial quantization scored for them (e.g. runall's recommendation), "
                                   "ready to deploy or to check with check-deployment.")
    p.add_argument("model_or_file", metavar="MODEL", help="the calibrated model (.onnx)")
    p.add_argument("-o", "--output", dest="save_path", required=True, metavar="OUT.onnx", help="the model file to write")
    p.add_argument("-f", "--float-nodes", dest="float_nodes", type=names_value("--float-nodes"), metavar="LIST",
                   help="ordinary nodes (their calibration nodes) or calibration nodes to switch off: a,b or [a,b]")
    p.add_argument("--int16-nodes", dest="int16_nodes", type=names_value("--int16-nodes"), metavar="LIST",
                   help="nodes whose activation calibration nodes become int16 (as sensitivity-analysis --qtype int16 scored)")
    p.add_argument("--float-model", dest="float_model", metavar="FLOAT.onnx",
                   help="the float model, for QDQ models that store weights as integers")
    p.set_defaults(func=_export)

    p = sub.add_parser("info", help="list the calibration nodes and ordinary nodes of a calibrated model")
    p.add_argument("model_or_file", metavar="MODEL", help="the calibrated model (.onnx)")
    p.add_argument("--float-model", dest="float_model", metavar="FLOAT.onnx",
                   help="the float model, for QDQ models that store weights as integers")
    p.set_defaults(func=_info)


def _register_runall(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("runall", help="run every analysis and write a report",
                       description="Sensitivity, distributions, box plots, cumulative error, partial quantization, and index.html.")
    add_model_and_data(p)
    p.add_argument("-s", "--save_dir", default="./debug_result/", help="output folder (default ./debug_result/)")
    p.add_argument("-nm", "--ns_metrics", type=list_value("--ns_metrics"), default="cosine-similarity", help=f"sweep metrics: {_METRICS} (default cosine-similarity)")
    p.add_argument("-o", "--output_node", type=list_value("--output_node"), help="compare sweeps at this node's outputs")
    p.add_argument("-nt", "--node_type", type=list_value("--node_type"), help="node, weight, activation or a list (default: weight and activation)")
    p.add_argument("-dn", "--data_num", type=data_num, default=1, help="samples for the sweeps, the first ones (default 1; 'all')")
    p.add_argument("-v", "--verbose", type=parse_bool, default=False, help="also log the sweep tables (default false)")
    p.add_argument("-i", "--interested_nodes", type=list_value("--interested_nodes"), help="sweep only these: [a,b] or [[a,b],[c]]")
    p.add_argument("-dnl", "--dis_nodes_list", type=list_value("--dis_nodes_list"), help="distributions of these (default: top 5 of each sweep)")
    p.add_argument("-cn", "--cw_nodes_list", type=list_value("--cw_nodes_list"), help="box plots of these (default: top 5 of each sweep)")
    p.add_argument("-a", "--axis", type=int, default=None, help="channel axis of the box plots")
    p.add_argument("-qn", "--quantize_node", type=list_value("--quantize_node"), help="curves: ['weight','activation'] (default), names or groups")
    p.add_argument("-nqn", "--non_quantize_node", type=list_value("--non_quantize_node"), help="curves with these un-quantized")
    p.add_argument("-am", "--ae_metric", default="cosine-similarity", help="metric of the curves (default cosine-similarity)")
    p.add_argument("-avm", "--average_mode", type=parse_bool, default=False, help="curves as running means (default false)")
    p.add_argument("-pt", "--pick_threshold", type=float, default=0.999, help="partial quantization of nodes at or below this (default 0.999)")
    p.add_argument("-sn", "--sensitive_nodes", type=list_value("--sensitive_nodes"), help="partial quantization of these instead")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip index.html")
    p.add_argument("--check-deployment", dest="check_deployment", action="store_true",
                   help="also run the model as ONNX Runtime deploys it and compare with the simulation (see check-deployment)")
    add_runtime(p)
    p.set_defaults(func=_runall)


def _notes(notes) -> None:  # noqa: ANN001
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _few_samples(ctx, data_num: int | None) -> None:  # noqa: ANN001
    """Say so when a result rests on fewer samples than the data holds (the original's default is
    one, and one sample can show no loss where the others do)."""
    used, total = len(ctx.samples(data_num)), len(ctx.data)
    if used < total:
        first = "the first sample" if used == 1 else f"the first {used} samples"
        print(f"note: scored on {first} of {total}; --data_num all scores every one, and select-sensitive-samples finds "
              "the worst (a single sample can hide a loss the others show)", file=sys.stderr)


def _written(paths) -> None:  # noqa: ANN001
    paths = [str(p) for p in paths]
    if paths:
        print(f"wrote {len(paths)} file{'s' if len(paths) > 1 else ''}: " + ", ".join(paths))


def _ctx(args: argparse.Namespace):  # noqa: ANN202
    model, data = Path(str(args.model_or_file)), Path(str(args.calibrated_data))
    if model.is_dir() and data.is_file() and data.suffix.lower() == ".onnx":  # the Python functions' order differs
        raise OptionError(f"the model comes first on the command line, then the calibration data: got the folder {str(model)!r} "
                          f"first and the model {str(data)!r} second; swap the two")
    if getattr(args, "save_dir", None) is not None:  # a bad save_dir ('' too) fails before the model is read, and nothing is created yet
        from ..api.checks import check_save_dir

        check_save_dir(args.save_dir, args.calibrated_data)
    ctx = api.common.context_for(args.model_or_file, args.calibrated_data, args.float_model, args.providers, args.cache,
                                 args.workers, args.executor)
    _notes(ctx.model.notes)
    return ctx


def _sensitivity(args: argparse.Namespace) -> int:
    ctx = _ctx(args)
    with progress_bar("Progress") as progress, api.common.runtime_errors(ctx, args.data_num):
        result = api.sensitivity_of_nodes(ctx, metrics=args.metrics, output_node=args.output_node, node_type=args.node_type,
                                          data_num=args.data_num, interested_nodes=args.interested_nodes, progress=progress)
    rows = sensitivity_rows(result, rounded=True)
    if not args.verbose:
        rows = {k: {m: v[m] for m in result.metrics} for k, v in rows.items()}
    print(info_table("node sensitivity", args.node_type, rows).lstrip("\n"))
    _few_samples(ctx, args.data_num)
    if args.save_dir is not None:
        _written(write_sensitivity(result, args.save_dir))
    return 0


def _acc_error(args: argparse.Namespace) -> int:
    if args.quantize_node is None and args.non_quantize_node is None:  # before the model is read
        raise OptionError("-q/--quantize_node and -nq/--non_quantize_node are both empty; give at least one, e.g. "
                          "-q \"['weight','activation']\" for the weight-only, activation-only and calibrated curves")
    check_acc_nodes(None, args.quantize_node, args.non_quantize_node)
    ctx = _ctx(args)
    results = api.plot_acc_error(args.calibrated_data, ctx, args.quantize_node, args.non_quantize_node, args.metric,
                                 args.average_mode, args.save_dir, data_num=args.data_num)
    for r in results:
        where = f"{r.tensors[-1]!r}, output of {r.nodes[-1]!r}, the last of {len(r.tensors)}" if r.tensors else "no node outputs"
        print(f"{r.prefix} ({r.metric} at {where}):")
        for c in r.curves:
            last = c.values[-1] if c.values else math.nan
            print(f"  {c.label}: {last:.6g}")
    from ..report.names import acc_error_png

    _written(Path(args.save_dir) / acc_error_png(r.prefix, r.metric, args.average_mode) for r in results)
    return 0


def _distribution(args: argparse.Namespace) -> int:
    from ..report.names import distribution_png

    items = api.plot_distribution(_ctx(args), args.calibrated_data, args.nodes_list, args.save_dir)
    _written(Path(args.save_dir) / distribution_png(d, items) for d in items)
    return 0


def _channelwise(args: argparse.Namespace) -> int:
    from ..report.names import boxplot_png

    with progress_bar("Testing"):
        items = api.get_channelwise_data_distribution(_ctx(args), args.calibrated_data, args.nodes_list, args.axis, args.save_dir)
    _written(Path(args.save_dir) / boxplot_png(b.name, [x.name for x in items]) for b in items)
    return 0


def _partial(args: argparse.Namespace) -> int:
    check_pick_threshold(args.pick_threshold, check_metric(args.metric))  # before the model is read
    bars = ProgressBars()
    try:
        ctx = _ctx(args)
        r = api.sensitivity_analysis(ctx, args.calibrated_data, args.pick_threshold, args.data_num,
                                     args.sensitive_nodes, args.save_dir, metric=args.metric, qtype=args.qtype,
                                     order=args.order, progress=bars)
    finally:
        bars.close()
    rows = {"none": {"single": "", "partial": shown(r.baseline, r.metric, 6)}}
    for n, s, p in zip(r.nodes, r.single, r.partial):
        rows[n] = {"single": shown(s, r.metric, 6), "partial": shown(p, r.metric, 6)}
    title = ("partial quantization" + (" (partial: nodes 1..k in int16)" if r.qtype == "int16" else "")
             + (", greedy order" if r.order == "greedy" else ""))
    print(info_table(title, "node", rows).lstrip("\n"))
    _few_samples(ctx, args.data_num)
    if not r.nodes:  # the original logs "pick_threshold is too small"
        where, move = pick_direction(r.metric)
        print(f"note: no node's {r.metric} is {where} pick_threshold {r.pick_threshold:g}; {move} it (-p) to pick some",
              file=sys.stderr)
    if r.left_out:
        print(f"note: {', '.join(r.left_out)} left out: with {'it' if len(r.left_out) == 1 else 'them'} too in float, no "
              "calibration node would be on (the float model)", file=sys.stderr)
    best = r.best_prefix()
    if best:
        print(f"best with nodes 1..{len(best)} {'in int16' if r.qtype == 'int16' else 'in float'}: "
              + _how(best, r.qtype, ctx.model, str(args.model_or_file)))
    _written([Path(args.save_dir) / "partial_quantization.png", Path(args.save_dir) / "partial_quantization.json"])
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ..analyses.stats import calibration_node_stats
    from ..api.analysis import display_row, write_stats
    ctx = _ctx(args)
    with api.common.runtime_errors(ctx, args.data_num):
        stats = calibration_node_stats(ctx, args.nodes_list, args.data_num)
    written = api.common.write_all(args.save_dir, lambda folder: write_stats(stats, folder, args.visualize))
    if args.visualize:
        print(info_table("calibration nodes stat info", "node", {s.name: display_row(s) for s in stats}).lstrip("\n"))
    _written(written)
    return 0


def _local_error(args: argparse.Namespace) -> int:
    from ..metrics import get_metrics

    ctx = _ctx(args)
    with progress_bar("Progress") as progress:
        result = api.local_errors(ctx, args.calibrated_data, nodes=args.nodes, metrics=args.metrics, data_num=args.data_num,
                                  progress=progress)
    first = get_metrics(result.metrics[0])[0]
    worst = sorted(result.entries, key=lambda e: first.badness(e.scores[first.name]))  # worst first, as the sweeps
    print(info_table("local error", "node", {e.node: {m: shown(e.scores[m], m) for m in result.metrics} for e in worst}).lstrip("\n"))
    _few_samples(ctx, args.data_num)
    return 0


def _select_samples(args: argparse.Namespace) -> int:
    import shutil

    from ..calibration.inputs import check_replaceable, replace_folder, write_samples
    from ..report.files import dump_json, ensure_dir, staging_folder

    check_num_sample(args.num_sample)
    target = None  # SAVE_DIR/calibration_data
    if args.save_dir:  # checked before any work; never the data being read (it would be cleared first)
        target = check_save_dir(args.save_dir, args.calibrated_data) / "calibration_data"
        data = Path(args.calibrated_data).resolve()
        if target.resolve() in (data, *data.parents):
            raise OptionError(f"save_dir {args.save_dir!r} would put the selected samples in place of the calibration data "
                              f"{args.calibrated_data!r} they are read from; choose another folder")
    ctx = _ctx(args)
    samples = ctx.samples(args.data_num)
    check_num_sample(args.num_sample, len(samples), args.data_num)
    if target is not None:
        check_replaceable(target, {s.name for s in ctx.model.inputs})
    with progress_bar("Progress") as progress:
        ranking = api.sample_sensitivity(ctx, args.calibrated_data, metric=args.metric, data_num=args.data_num, progress=progress)
    chosen = ranking.worst(args.num_sample)
    rows = {f"{rank + 1}": {"sample": ranking.labels[i], ranking.metric: shown(ranking.scores[i], ranking.metric, 6)}
            for rank, i in enumerate(chosen)}
    print(info_table(f"the {len(chosen)} worst of {len(ranking.scores)} samples", "rank", rows).lstrip("\n"))
    if target is None:
        return 0
    root = target.parent
    staging = staging_folder(".calibration_data-", ensure_dir(root, "save_dir"))
    try:  # written whole, then moved into place: a failure leaves the folder as it was
        write_samples(samples.subset(chosen), staging, ctx.model.inputs, "the selected samples")
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    dump_json(root / "sample_sensitivity.json", ranking.to_dict())
    print(f"wrote {target} ({len(chosen)} samples, worst first: 0.npy is sample {ranking.labels[chosen[0]]}) and "
          f"{root / 'sample_sensitivity.json'}")
    print(f"debug on them: ptqdebug runall {shlex.quote(str(args.model_or_file))} {shlex.quote(str(target))}")
    return 0


def _check_deployment(args: argparse.Namespace) -> int:
    ctx = _ctx(args)
    with progress_bar("Progress") as progress:
        result = api.check_deployment(ctx, args.calibrated_data, metrics=args.metrics, data_num=args.data_num, progress=progress)
    if result.failure is not None:
        print(result.summary())
        return 0
    rows = {f"{o.output} {what}": {m: round(getattr(o, key)[m], 6) for m in result.metrics}
            for o in result.outputs for what, key in (("deployed", "deployed"), ("simulated", "simulated"),
                                                       ("deployed vs simulated", "between"))}
    print(info_table("deployment check (against float, and deployed against simulated)", "output", rows).lstrip("\n"))
    print(result.summary())
    return 0


def _runall(args: argparse.Namespace) -> int:
    bars = ProgressBars()
    ctx = _ctx(args)
    closing = logging.getLogger("ptqdebug.summary")  # runall's closing lines: printed below, with the scores
    level = closing.level
    closing.setLevel(logging.CRITICAL + 1)
    try:
        run = api.runall(
            ctx, args.calibrated_data, args.save_dir, args.ns_metrics, args.output_node, args.node_type, args.data_num,
            args.verbose, args.interested_nodes, args.dis_nodes_list, args.cw_nodes_list, args.axis, args.quantize_node,
            args.non_quantize_node, args.ae_metric, args.average_mode, args.pick_threshold, args.sensitive_nodes,
            progress=bars, report=args.report, check_deployment=args.check_deployment,
        )
    finally:
        closing.setLevel(level)
        bars.close()
    print(run.verdict.summary)
    _few_samples(ctx, args.data_num)
    _notes(run.notes[len(ctx.model.notes):])  # what this run skipped (the model's notes came first)
    _print_how_to_apply(run.verdict, ctx.model, str(args.model_or_file), str(args.calibrated_data))
    if run.deployment is not None:
        print(run.deployment.summary())
    for qtype, check in run.fix_deployment.items():
        what = "in float" if qtype == "float32" else "with their activations in int16"
        print(f"the model with the recommended nodes {what}: {check.summary()}")
    for kind, result in run.sensitivities.items():
        top = ", ".join(f"{e.name} ({shown(e.scores[result.metrics[0]], result.metrics[0], 6)})" for e in result.top(3))
        if tuple(result.compared) != tuple(ctx.model.outputs):  # an output_node (-o): say where
            at = f" (compared at {', '.join(result.compared[:3])}{', ...' if len(result.compared) > 3 else ''})"
        else:  # with -o, partial quantization's node sweep still compares at the outputs: say so too
            at = " (compared at the model outputs)" if args.output_node else ""
        print(f"most sensitive {'' if kind == 'node' else kind + ' '}nodes{at}: {top or 'none (no such calibration nodes)'}")
    print(f"wrote {len(run.files)} files under {run.save_dir}")
    if args.report:
        print(f"report: {run.save_dir / 'index.html'}")
    return 0


def _how(nodes: Sequence[str], qtype: str, model: CalibratedModel, path: str) -> str:
    """How to keep ``nodes`` in float or their activations in int16: the ``export`` command (and
    ``calibrate`` for float, where the float model knows the names), or for Horizon models the
    original toolchain's setting, since ``export`` and ``calibrate`` write QDQ models."""
    if "horizon" in model.source_format:
        if qtype == "int16":
            return f"give them InputType: int16 in the original toolchain's node_info: {', '.join(nodes)}"
        return f"list them in the original toolchain's run_on_cpu: {', '.join(nodes)}"
    export, calibrate = apply_commands(nodes, path, qtype, model.float_source, model.auto_named, model.not_in_float)
    if qtype == "int16":
        return export
    if calibrate is None:
        return f"{export}   ({unnamed_reason(nodes, model.auto_named, model.not_in_float)})"
    return f"{export}   (or from the float model: {calibrate})"


def _print_how_to_apply(verdict: Verdict, model: CalibratedModel, path: str, data: str) -> None:
    """How to keep the recommended nodes in float or int16, and to check the model written."""
    keep, keep16 = verdict.keep_float, verdict.keep_int16
    if keep:
        print(f"to keep the recommended nodes in float: {_how(keep, 'float32', model, path)}")
    if keep16:
        lead = "or their activations in int16" if keep else "to keep the recommended nodes' activations in int16"
        print(f"{lead}: {_how(keep16, 'int16', model, path)}")
    for x in verdict.lost:  # (said in the summary: here, the command)
        print(f"to keep {x.quantizer} in float, whose output channels are lost: {_how([x.quantizer], 'float32', model, path)}")
    if (keep or keep16) and "horizon" not in model.source_format:  # scores are ONNX's; ONNX Runtime's defaults may differ
        print("then check the written model as ONNX Runtime deploys it, on these samples and on held-out ones: "
              + check_command(bool(keep), bool(keep16), data))


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    bars = ProgressBars()
    try:
        r = run_demo(args.out, progress=bars)
    finally:
        bars.close()
    print(f"calibrated the digits CNN ({r.method} method): float vs calibrated output cosine {r.output_cosine:.6f} "
          f"(mean of its {r.calibration_samples} calibration samples)")
    print(f"held-out top-1 accuracy on {r.holdout} digits: float {r.float_accuracy:.2%}, quantized {r.quantized_accuracy:.2%} "
          f"({r.deployed_accuracy:.2%} as ONNX Runtime deploys it)")
    first = "the first calibration sample" if r.verdict_samples == 1 else f"the first {r.verdict_samples} samples"
    print(f"runall on {first} (its default, as the original's): {r.verdict}")
    print("most sensitive nodes: " + ", ".join(f"{n} ({v:.6f})" for n, v in r.most_sensitive))
    print(f"calibrated model: {r.calibrated_model}")
    print(f"report: {r.report}  ({r.seconds:.1f} s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    done = api.export_model(args.model_or_file, args.save_path, args.float_nodes, int16_nodes=args.int16_nodes,
                            float_model=args.float_model)
    parts = [f"{len(names)} calibration node{'' if len(names) == 1 else 's'} {what}{': ' + ', '.join(names) if names else ''}"
             for what, names in (("off", done.switched_off), ("in int16", done.int16)) if names or what == "off"]
    print(f"wrote {done.path} ({'; '.join(parts)})")
    if done.all_off:
        _notes(["every calibration node is off: the file is the float model (with any Relu/Clip the quantizer deleted "
                "restored), not a quantized one"])
    if done.stayed:
        _notes([f"{len(done.stayed)} weight calibration node{'s' * (len(done.stayed) != 1)} of those nodes stay quantized: "
                "their weights are stored as integers and " + ("no float model was given (--float-model switches them too)"
                                                               if args.float_model is None else "the float model lacks them")])
    return 0


def _info(args: argparse.Namespace) -> int:
    model = load_model(args.model_or_file, args.float_model)
    print(f"{args.model_or_file}: {model.source_format} calibrated model")
    print(f"inputs: {', '.join(f'{s.name} {s.describe()}' for s in model.inputs)}")
    print(f"outputs: {', '.join(model.outputs)}")
    kinds = {"weight": model.weight_quantizers, "activation": model.activation_quantizers}
    for kind, qs in kinds.items():
        print(f"\n{kind} calibration nodes ({len(qs)}):")
        for q in qs:
            extra = "" if q.exact else "  (fixed: weights stored as integers)"
            state = "" if q.enabled else "  (switch OFF)"
            readers = ";".join(model.quantizer_consumers.get(q.name, ())) or (f"(inside {q.scope})" if q.scope else "(no node reads it)")
            blocks = f" of {q.block_size}" if q.block_size else ""
            of = f" (unnamed in the file; quantizes {q.input})" if q.name in model.auto_named else ""
            print(f"  {q.name}{of}  {q.qtype} {q.granularity}{blocks} -> {readers}{extra}{state}")
    nodes = model.sensitivity_nodes
    print(f"\nordinary nodes with calibration nodes ({len(nodes)}):")
    for n in nodes:
        print(f"  {n} ({model.node_types[n]}): {', '.join(model.node_quantizers[n])}")
    if model.unowned_quantizers:
        print(f"\ncalibration nodes no node owns, each a node sweep candidate of its own ({len(model.unowned_quantizers)}):")
        for name in model.unowned_quantizers:
            print(f"  {name}")
    for note in model.notes:
        print(f"\nnote: {note}")
    return 0
