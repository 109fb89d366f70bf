"""What a sweep tries: candidates, each a named set of calibration nodes switched on together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ModelError, OptionError
from ..model import SHAPE_ONLY, CalibratedModel

__all__ = ["NODE_TYPES", "SWEEP_TYPES", "Candidate", "NodeList", "candidates_for", "check_node_type", "flat_names", "group_members",
           "group_name", "normalize_node_list"]

NODE_TYPES = ("node", "weight", "activation")
#: what a single sweep also takes: the original's undocumented ``tae`` (reference §2.1), the
#: activation calibration nodes read by a Conv, MatMul, Gemm or ConvTranspose (not in runall)
SWEEP_TYPES = (*NODE_TYPES, "tae")
TAE_OPS = frozenset({"Conv", "MatMul", "Gemm", "ConvTranspose"})

#: A node list as the original tool accepts it: a name, a list of names, or a list of lists.
NodeList = str | Sequence[str | Sequence[str]]


@dataclass(frozen=True)
class Candidate:
    """``name`` is the result key: a node name, or names joined with ``+`` for a group."""

    name: str
    quantizers: tuple[str, ...]


def normalize_node_list(value: object, what: str) -> list[str | list[str]]:
    """A str becomes ``[str]``; lists of str / lists of lists of str are checked and copied."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise OptionError(f"{what} is a {type(value).__name__}; expected a node name, a list of names or a list of lists")
    out: list[str | list[str]] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (list, tuple)) and all(isinstance(x, str) for x in item):
            out.append(list(item))
        else:
            raise OptionError(f"{what} contains {item!r}; expected node names or lists of node names")
    return out


def flat_names(value: object, what: str) -> list[str]:
    """Every name of a node list option (groups flattened), de-duplicated, in order."""
    names = normalize_node_list(value, what)
    return list(dict.fromkeys(n for item in names for n in ([item] if isinstance(item, str) else item)))


def group_name(names: Sequence[str]) -> str:
    """The result key of a candidate group of ``interested_nodes``: its names joined with ``+``."""
    return "+".join(names)


def group_members(interested_nodes: object) -> dict[str, list[str]]:
    """The groups of an ``interested_nodes`` option by :func:`group_name` (empty for None)."""
    if interested_nodes is None:
        return {}
    return {group_name(g): g for g in normalize_node_list(interested_nodes, "interested_nodes") if isinstance(g, list)}


def check_node_type(node_type: object) -> str:
    if not isinstance(node_type, str) or node_type not in SWEEP_TYPES:
        raise OptionError(f"unknown node_type {node_type!r}; expected one of {', '.join(SWEEP_TYPES)}")
    return node_type


def candidates_for(model: CalibratedModel, node_type: str, interested_nodes: object = None) -> list[Candidate]:
    """The candidates of a sweep (reference §3.3 step 1).

    ``node``: every ordinary node with calibration nodes on its inputs (but :data:`SHAPE_ONLY`
    ones), all of them switched on together, then each activation calibration node that no
    ordinary node finds (one on a model output:
    :attr:`~ptqdebug.model.CalibratedModel.unowned_quantizers`) alone; ``weight`` /
    ``activation``: each calibration node of that kind; ``tae``: each activation calibration node
    that a Conv, MatMul, Gemm or ConvTranspose reads. ``interested_nodes`` replaces the list: each
    name is a candidate, each nested list one candidate group.
    """
    check_node_type(node_type)
    fixed = model.fixed_quantizers
    if interested_nodes is not None:
        out = []
        for item in normalize_node_list(interested_nodes, "interested_nodes"):
            names = [item] if isinstance(item, str) else item
            if not names:
                raise OptionError("interested_nodes contains an empty group []; expected at least one name per group")
            quantizers = model.expand(names, "interested_nodes")
            out.append(Candidate(group_name(names), quantizers))
        return out
    if node_type == "node":
        return [*(Candidate(n, model.node_quantizers[n]) for n in model.sensitivity_nodes
                  if model.node_types[n] not in SHAPE_ONLY),
                *(Candidate(q, (q,)) for q in model.unowned_quantizers)]
    if node_type == "tae":
        ops = {n.name: n.op_type for n in model.proto.graph.node}
        return [Candidate(q.name, (q.name,)) for q in model.activation_quantizers if q.name not in fixed
                and any(ops.get(c) in TAE_OPS for c in model.quantizer_consumers.get(q.name, ()))]
    pool = model.weight_quantizers if node_type == "weight" else model.activation_quantizers
    if node_type == "weight" and pool and all(q.name in fixed for q in pool):
        raise ModelError(
            f"every weight of this model is stored as integers (lone DequantizeLinear), so weight calibration nodes "
            f"cannot be switched off: {model.fixed_reason}"
        )
    return [Candidate(q.name, (q.name,)) for q in pool if q.name not in fixed]
