"""Cast round trips: a float32 tensor cast to a narrower float type and straight back.

AMD Quark's BF16 configuration, exported with ``BF16QDQToCast``, simulates bfloat16 that way: a
``Cast(to=BFLOAT16)`` whose every reader is a ``Cast(to=FLOAT)``, on activations and weights
alike, where its QDQ export has a QuantizeLinear → DequantizeLinear pair. Each round trip is one
calibration node (bfloat16, float16 or float8), named after its first Cast; switched on, it runs
the model's own two Casts. A narrow tensor read by anything but a Cast back is computed in that
type, not simulated: its Casts stay ordinary nodes.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..graph import GraphIndex
from ..quantizer import Quantizer, QuantizerKind
from . import Found
from .params import qtype_of_onnx, thresholds_of

__all__ = ["find_casts"]

#: the float types a round trip may pass through
NARROW_FLOATS = frozenset({onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT8E4M3FN,
                           onnx.TensorProto.FLOAT8E4M3FNUZ, onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ})


def _to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
        return None
    return next((int(a.i) for a in node.attribute if a.name == "to"), None)


def _round_trip(index: GraphIndex, cast: onnx.NodeProto) -> bool:
    """Whether every reader of ``cast``'s narrow output casts it back to float32."""
    backs = index.consumers.get(cast.output[0], [])
    return bool(backs) and cast.output[0] not in index.outputs and all(_to(b) == onnx.TensorProto.FLOAT for b in backs)


def find_casts(index: GraphIndex) -> list[Found]:
    """Every Cast round trip float32 → narrow float → float32 of the graph.

    The tensor cast must be float32, or switching the round trip off would change its readers'
    type: a float32 initializer or graph input, the output of a Cast to float32, or any tensor
    where the graph computes in float32 throughout (no narrow constants, no narrow tensor read by
    anything but a Cast back).
    """
    casts = [n for n in index.nodes if _to(n) in NARROW_FLOATS]
    trips = [n for n in casts if _round_trip(index, n)]
    float32_graph = len(trips) == len(casts) and not any(
        t.data_type in NARROW_FLOATS for t in index.initializers.values())
    graph_inputs = {vi.name: vi.type.tensor_type.elem_type for vi in index.graph.input}
    found: list[Found] = []
    for cast in trips:
        src = cast.input[0]
        stored = index.initializers.get(src)
        producer = index.producer.get(src)
        if stored is not None:
            is_float32 = stored.data_type == onnx.TensorProto.FLOAT
        elif src in graph_inputs:
            is_float32 = graph_inputs[src] == onnx.TensorProto.FLOAT
        else:
            is_float32 = float32_graph or (producer is not None and _to(producer) == onnx.TensorProto.FLOAT)
        if not is_float32:
            continue
        backs = index.consumers[cast.output[0]]
        narrow = _to(cast)
        assert narrow is not None
        kind: QuantizerKind = "weight" if stored is not None else "activation"
        qtype = qtype_of_onnx(narrow)
        one, zero = np.ones((), np.float32), np.zeros((), np.int64)
        quantizer = Quantizer(
            name=cast.name,
            kind=kind,
            input=src,
            output=backs[0].output[0],
            qtype=qtype,
            axis=None,
            scale=one,
            zero_point=zero,
            thresholds=thresholds_of(qtype, one, zero),
            nodes=(cast, backs[0]),
            source_op="Cast",
        )
        found.append(Found(nodes=(cast, *backs), quantizer=quantizer,
                           aliases=tuple((quantizer.output, b.output[0]) for b in backs[1:])))
    return found
