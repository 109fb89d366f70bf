"""Float gap: is the calibrated model, every calibration node off, still the float model?

Every score of the analyses compares a configuration with the calibrated model's own graph run
in float (every calibration node off). For ONNX Runtime's quantizer that graph is the float model
(a folded BatchNorm changes it by rounding only). Other quantizers change more: AMD Quark's XINT8
configuration replaces each Sigmoid by a HardSigmoid, which NPUs compute, and on YOLOv8n that
change alone costs more (cosine 0.99661 against the float model) than quantization does against
the changed graph (0.99829). No calibration node switches such a change off, so the sweeps cannot
see it; only the float model itself can. Given ``float_model=`` / ``--float-model``, this runs it
and says how far the calibrated graph is from it, and which operator types changed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.external_data_helper
from onnx import numpy_helper

from ..engine.runtime import SessionError, deployed_session
from ..metrics import METRICS, compare_sample
from .sensitivity import decode_float, encode_float

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["FloatGap", "float_gap"]

#: the calibrated graph in float departs from the float model by more than rounding: its own loss
#: (1 - cosine) is above this and at least a tenth of the calibrated model's loss against float
GAP_LOSS = 1e-5
#: operator types left out of the count of what changed: calibration nodes and what stands for
#: them, and constants (which the calibrated model holds as initializers)
_NOT_COUNTED = frozenset({"QuantizeLinear", "DequantizeLinear", "Identity", "Constant"})


@dataclass(frozen=True)
class FloatGap:
    """The calibrated model against the float model it was made from, at the outputs both have
    (cosine similarity, mean over outputs and samples).

    ``graph``: every calibration node off (the reference of every other score) against the float
    model; ``calibrated``: every calibration node on against the float model; ``changed_ops``:
    ``{op type: (count in the float model, count in the calibrated graph)}`` where they differ;
    ``changed_constants``: float constants both hold, by name and shape, with other values (a
    corrected bias read beside a weight calibration node is not one: it goes with that node, see
    :attr:`~ptqdebug.quantizer.Quantizer.corrections`)."""

    float_model: str
    samples: int
    graph: float
    calibrated: float
    changed_ops: Mapping[str, tuple[int, int]]
    changed_constants: int = 0

    @property
    def matters(self) -> bool:
        """Whether the calibrated graph itself departs from the float model by more than rounding
        (see :data:`GAP_LOSS`)."""
        loss = 1.0 - self.graph
        return loss > GAP_LOSS and loss >= 0.1 * (1.0 - self.calibrated)

    def describe(self) -> str:
        """A sentence fragment: how far the graph is from the float model, and what changed."""
        ops = ", ".join(f"{op} {a} → {b}" for op, (a, b) in list(self.changed_ops.items())[:4])
        n = self.changed_constants
        changes = ([f"operators changed: {ops}"] if ops else []) + (
            [f"{n} float constant{'s' * (n != 1)} changed"] if n else [])
        change = f" ({'; '.join(changes)})" if changes else ""
        return (f"with every calibration node off, this model is not the float model {self.float_model}: it scores "
                f"{self.graph:.6f} against it{change}, and the calibrated model {self.calibrated:.6f}")

    def to_dict(self) -> dict[str, Any]:
        return {"float_model": self.float_model, "samples": self.samples, "graph": encode_float(self.graph),
                "calibrated": encode_float(self.calibrated), "matters": self.matters,
                "changed_ops": {k: list(v) for k, v in self.changed_ops.items()}, "changed_constants": self.changed_constants}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FloatGap:
        return cls(str(d["float_model"]), int(d["samples"]), decode_float(d["graph"]), decode_float(d["calibrated"]),
                   MappingProxyType({k: (int(v[0]), int(v[1])) for k, v in d["changed_ops"].items()}),
                   int(d.get("changed_constants", 0)))


def float_gap(ctx: Context, data_num: int | None = 1) -> FloatGap | None:
    """Run the float model ``ctx`` was opened with on the first ``data_num`` samples and compare
    it with the calibrated model, every calibration node off and every one on; None where no float
    model was given, or where it cannot run on this data or lacks the calibrated model's outputs."""
    given = ctx.float_model
    if given is None:
        return None
    model = ctx.model
    outputs = [o for o in model.outputs if o not in model.integer_outputs]
    try:
        session = deployed_session(os.fspath(given) if isinstance(given, (str, os.PathLike)) else given.SerializeToString(),
                                   ctx.engine.providers, ctx.engine.threads)
    except SessionError:
        return None
    if not outputs or not set(outputs) <= {o.name for o in session.get_outputs()} or \
            {i.name for i in session.get_inputs()} != {i.name for i in model.inputs}:
        return None
    cos = [METRICS["cosine-similarity"]]
    samples = len(ctx.samples(data_num))
    graph, calibrated = [], []
    for s in range(samples):
        ref = ctx.reference(s, outputs)
        on = ctx.engine.run(ref, model.calibrated_configuration, outputs)
        floats = dict(zip(outputs, session.run(outputs, dict(ctx.data[s]))))
        graph.append(compare_sample(cos, outputs, floats, ref.values, s)[:, 0].mean())
        calibrated.append(compare_sample(cos, outputs, floats, on, s)[:, 0].mean())
    proto = given if isinstance(given, onnx.ModelProto) else onnx.load(os.fspath(given), load_external_data=False)
    return FloatGap(model.float_source or "FLOAT_MODEL", samples, float(np.mean(graph)), float(np.mean(calibrated)),
                    MappingProxyType(_changed_ops(proto, ctx)), _changed_constants(proto, ctx))


def _changed_ops(float_proto: onnx.ModelProto, ctx: Context) -> dict[str, tuple[int, int]]:
    """``{op type: (in the float model, in the calibrated graph)}`` where the counts differ (main
    graphs; a Relu the quantizer deleted and ptqdebug restores counts as there)."""
    model = ctx.model
    standing_in = set(model.quantizer_map) | model.copies
    before = Counter(n.op_type for n in float_proto.graph.node)
    after = Counter(n.op_type for n in model.proto.graph.node if n.name not in standing_in)
    after.update(q.off_node.op_type for q in model.quantizers if q.off_node is not None and q.scope is None)
    ops = sorted((set(before) | set(after)) - _NOT_COUNTED, key=lambda op: (-abs(before[op] - after[op]), op))
    return {op: (before[op], after[op]) for op in ops if before[op] != after[op]}


def _changed_constants(float_proto: onnx.ModelProto, ctx: Context) -> int:
    """How many float initializers of the float model the calibrated graph holds under the same
    name and shape with other values (stored outside the file: not compared)."""
    mine = {t.name: t for t in ctx.model.proto.graph.initializer}
    changed = 0
    for t in float_proto.graph.initializer:
        other = mine.get(t.name)
        if (other is None or t.data_type != onnx.TensorProto.FLOAT or other.data_type != t.data_type
                or list(other.dims) != list(t.dims) or onnx.external_data_helper.uses_external_data(t)):
            continue
        changed += not np.array_equal(numpy_helper.to_array(t), numpy_helper.to_array(other))
    return changed
