"""The float model a QDQ model was made from, as a source of facts the QDQ file lost.

ONNX Runtime's quantizer stores weights as integers by default and deletes a Relu/Clip when the
next QuantizeLinear's range already clamps there. Given the float model, ptqdebug recovers the
float weights (found through the reading node's name and input slot, else through the names
ONNX Runtime's quantizers give: ``<name>_quantized`` initializers from ``quantize_static``;
``<name>_DQ_Q4`` initializers read by ``<node>_matmul_Q4`` from the weight-only int4 quantizer
in QDQ format) and the deleted Relu/Clip nodes (found through the tensor name, which the
quantizer keeps).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["FloatModel"]

#: what ONNX Runtime's quantizers append to a weight's name, and to the name of the node reading it
_RENAMED_WEIGHT = re.compile(r"(_quantized|_DQ_Q\d+)$")
_RENAMED_NODE = re.compile(r"_matmul_Q\d+$")


class FloatModel:
    def __init__(self, proto: onnx.ModelProto) -> None:
        g = proto.graph
        self._inits = {t.name: t for t in g.initializer}
        for node in g.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self._inits[node.output[0]] = node.attribute[0].t
        self._nodes = {n.name: n for n in g.node if n.name}
        self._graph_nodes = list(g.node)
        self._producer = {o: n for n in g.node for o in n.output if o}

    @property
    def node_names(self) -> frozenset[str]:
        """Its nodes' names, an unnamed one's as ptqdebug names it (``<op_type>_<index>``, what
        ``calibrate`` gives it and accepts)."""
        return frozenset(n.name or f"{n.op_type}_{i}" for i, n in enumerate(self._graph_nodes))

    def constant(self, name: str) -> np.ndarray | None:
        t = self._inits.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def weight(self, consumer: str, slot: int, stored: str) -> tuple[str, np.ndarray] | None:
        """The float value read by node ``consumer`` at input ``slot`` (or named like ``stored``),
        with its name in the float model."""
        node = self._nodes.get(consumer) or self._nodes.get(_RENAMED_NODE.sub("", consumer))
        if node is not None and 0 <= slot < len(node.input) and node.input[slot] in self._inits:
            name = node.input[slot]
        else:
            name = _RENAMED_WEIGHT.sub("", stored)
        value = self.constant(name)
        return None if value is None else (name, value)

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return self._producer.get(tensor)
