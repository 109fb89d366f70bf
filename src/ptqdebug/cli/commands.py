"""The subcommands: each turns its arguments into one API call and prints what it found."""

from __future__ import annotations

import argparse
import sys

from .. import api
from ..report.tables import info_table, sensitivity_rows
from .args import add_model_and_data, add_runtime, list_value, parse_bool
from .progress import progress_bar

__all__ = ["register"]

_METRICS_HELP = "metrics: cosine-similarity, mse, mre, sqnr, chebyshev; a list like ['cosine-similarity','mse']"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "get-sensitivity-of-nodes",
        help="rank nodes by how much quantizing each alone hurts the outputs",
        description="Quantize one candidate at a time (everything else float) and rank candidates by the error at the outputs.",
    )
    add_model_and_data(p)
    p.add_argument("-m", "--metrics", type=list_value("--metrics"), default="cosine-similarity", help=_METRICS_HELP)
    p.add_argument("-o", "--output_node", type=list_value("--output_node"), help="compare at this node's outputs instead of the model outputs")
    p.add_argument("-n", "--node_type", choices=["node", "weight", "activation"], default="node",
                   help="node: ordinary nodes (all their calibration nodes); weight / activation: calibration nodes")
    p.add_argument("-d", "--data_num", type=int, default=1, help="number of samples to use, the first ones (default 1)")
    p.add_argument("-v", "--verbose", type=parse_bool, default=False, help="show the node/threshold/bit columns")
    p.add_argument("-i", "--interested_nodes", type=list_value("--interested_nodes"),
                   help="only these candidates: [a,b] or groups [[a,b],[c]]")
    p.add_argument("-s", "--save_dir", help="also write sensitivity_of_<node_type>.log and .json here")
    add_runtime(p)
    p.set_defaults(func=_sensitivity)

    p = sub.add_parser("info", help="list the calibration nodes and ordinary nodes of a calibrated model")
    p.add_argument("model_or_file", metavar="MODEL")
    add_runtime(p)
    p.set_defaults(func=_info)


def _sensitivity(args: argparse.Namespace) -> int:
    with progress_bar("Progress") as progress:
        ctx = api.open_context(args.model_or_file, args.calibrated_data, float_model=args.float_model,
                               providers=args.providers)
        result = api.sensitivity_of_nodes(
            ctx, metrics=args.metrics, output_node=args.output_node, node_type=args.node_type,
            data_num=args.data_num, interested_nodes=args.interested_nodes, progress=progress,
        )
    rows = sensitivity_rows(result, rounded=True)
    if not args.verbose:
        rows = {k: {m: v[m] for m in result.metrics} for k, v in rows.items()}
    for note in ctx.model.notes:
        print(f"note: {note}", file=sys.stderr)
    print(info_table("node sensitivity", args.node_type, rows).lstrip("\n"))
    if args.save_dir:
        written = api.write_sensitivity(result, args.save_dir)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    model = api.load_model(args.model_or_file, args.float_model)
    print(f"{args.model_or_file}: {model.source_format} calibrated model")
    print(f"inputs: {', '.join(f'{s.name} {s.describe()}' for s in model.inputs)}")
    print(f"outputs: {', '.join(model.outputs)}")
    kinds = {"weight": model.weight_quantizers, "activation": model.activation_quantizers}
    for kind, qs in kinds.items():
        print(f"\n{kind} calibration nodes ({len(qs)}):")
        for q in qs:
            extra = "" if q.exact else "  (fixed: weights stored as integers)"
            state = "" if q.enabled else "  (switch OFF)"
            readers = ";".join(model.quantizer_consumers.get(q.name, ()))
            print(f"  {q.name}  {q.qtype} {q.granularity} -> {readers}{extra}{state}")
    nodes = model.sensitivity_nodes
    print(f"\nordinary nodes with calibration nodes ({len(nodes)}):")
    for n in nodes:
        print(f"  {n} ({model.node_types[n]}): {', '.join(model.node_quantizers[n])}")
    for note in model.notes:
        print(f"\nnote: {note}")
    return 0
