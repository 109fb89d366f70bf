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
from ..onnxfile import skeleton
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


def _inferred_types(index: GraphIndex, proto: onnx.ModelProto) -> dict[str, int]:
    """Element types of the graph's tensors by ONNX type inference ({} where it fails)."""
    try:
        g = onnx.shape_inference.infer_shapes(skeleton(proto, graph=index.graph)).graph
    except Exception:  # inference is best effort: what it cannot type is not taken for float32
        return {}
    return {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]
            if vi.type.HasField("tensor_type")}


def find_casts(index: GraphIndex, proto: onnx.ModelProto) -> list[Found]:
    """Every Cast round trip float32 → narrow float → float32 of the graph (``index``, the main
    graph of ``proto`` or one of its bodies).

    The tensor cast must be float32, or switching the round trip off would change its readers'
    type: a float32 constant or graph input, the output of a Cast to float32, or a tensor ONNX type
    inference finds float32.
    """
    trips = [(n, to) for n in index.nodes if (to := _to(n)) in NARROW_FLOATS and _round_trip(index, n)]
    known = {vi.name: vi.type.tensor_type.elem_type for vi in index.graph.input}
    known.update((name, t.data_type) for name, t in index.initializers.items())
    known.update((n.output[0], to) for n in index.nodes if (to := _to(n)) is not None)
    if any(n.input[0] not in known for n, _ in trips):
        known = {**_inferred_types(index, proto), **known}
    found: list[Found] = []
    for cast, narrow in trips:
        src = cast.input[0]
        if known.get(src) != onnx.TensorProto.FLOAT:
            continue
        backs = index.consumers[cast.output[0]]
        kind: QuantizerKind = "weight" if src in index.initializers else "activation"
        qtype = qtype_of_onnx(narrow)
        # float8 is QuantizeLinear with scale 1 (thresholds at the type's largest value); bfloat16 and
        # float16 round each value at its own exponent: no scale to report
        shape: tuple[int, ...] = () if qtype.startswith("float8") else (0,)
        scale, zero_point = np.ones(shape, np.float32), np.zeros(shape, np.int64)
        quantizer = Quantizer(
            name=cast.name,
            kind=kind,
            input=src,
            output=backs[0].output[0],
            qtype=qtype,
            axis=None,
            scale=scale,
            zero_point=zero_point,
            thresholds=thresholds_of(qtype, scale, zero_point),
            nodes=(cast, backs[0]),
            source_op="Cast",
        )
        found.append(Found(nodes=(cast, *backs), quantizer=quantizer,
                           aliases=tuple((quantizer.output, b.output[0]) for b in backs[1:])))
    return found
