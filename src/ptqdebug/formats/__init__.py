"""Readers that turn each calibrated-model format into :class:`~ptqdebug.quantizer.Quantizer` records.

Each reader looks at a :class:`~ptqdebug.graph.GraphIndex` and returns :class:`Found` items: the
nodes a calibration node is made of in the file, and the quantizer that replaces them. The model
loader (:mod:`ptqdebug.model`) swaps every such group for one placeholder, which gives the float
graph with a named switch at every calibration node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..quantizer import Quantizer

__all__ = ["Found"]


@dataclass(frozen=True, eq=False)
class Found:
    """Nodes of the file to remove, and what stands in their place.

    ``quantizer`` is ``None`` when the nodes are replaced by constants only (``initializers``),
    e.g. an int32 bias whose float value the float model provides.
    """

    nodes: tuple[onnx.NodeProto, ...]
    quantizer: Quantizer | None
    initializers: tuple[onnx.TensorProto, ...] = field(default=())
    aliases: tuple[tuple[str, str], ...] = field(default=())  # (source, alias) pairs: alias = Identity(source)
