"""The model's graph as a heat map of sensitivity: an inline SVG, one box per ordinary node.

Users ask for a picture of *where* in the network quantization hurts (peers.md P6: only
TPU-MLIR draws one, in a live server). The report draws the ordinary nodes' own graph
(calibration nodes looked through, :meth:`~ptqdebug.model.CalibratedModel.node_edges`) top to
bottom, each node coloured by its node-sweep score: what quantizing only that node costs at the
compared tensors. Hover a box for its name and score; the recommended nodes are outlined.

The layout is layered, as Netron's and Graphviz's ``dot`` are, kept simple: a node's layer is
its longest path from the inputs, so every edge points down; within a layer, nodes follow the
mean position of their inputs (one pass), which keeps chains straight and branches apart.
:func:`layout` is pure and tested on its own; :func:`graph_map` turns results into HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import known_metric
from .htmlparts import as_list, esc, fmt, get, mapping, num

__all__ = ["MAX_NODES", "RANKED", "graph_map", "layout"]

#: Larger graphs are not drawn (a note says so): an SVG of tens of thousands of boxes helps no one
MAX_NODES = 5000
#: the most sensitive nodes get their rank beside their box
RANKED = 10

_W, _H, _GAP, _ROW, _PAD = 104, 20, 40, 34, 24  # box width and height, gap between boxes, layer pitch, margin
_ARC = 14  # how far an edge that skips layers bulges right of its boxes (and 2 px more per layer skipped, up to 8)
_NAME_ROOM = 300  # room on the right for the names of the ranked nodes
#: pale yellow (the least loss; unscored nodes are white) to dark red (the largest), interpolated
_RAMP = ((0.0, (254, 249, 195)), (0.35, (253, 230, 138)), (0.7, (249, 115, 22)), (1.0, (153, 27, 27)))
_DECADES = 4  # losses below 1/10^4 of the largest are drawn as none


def layout(count: int, edges: Sequence[tuple[int, int]]) -> list[tuple[int, float]]:
    """``(layer, x slot)`` of nodes ``0..count-1`` given in topological order, ``edges`` as
    ``(producer, consumer)`` index pairs. A node's layer is its longest path from a node without
    inputs, so every edge goes to a later layer; a node without inputs sits just above its
    nearest reader (a bias's DequantizeLinear, a Shape read deep down: not all in the first
    layer with long edges down). Slots are centred on the widest layer."""
    preds: list[list[int]] = [[] for _ in range(count)]
    succs: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    layer = [0] * count
    for j in range(count):
        if preds[j]:
            layer[j] = 1 + max(layer[i] for i in preds[j])
    for j in range(count):
        if not preds[j] and succs[j]:
            layer[j] = min(layer[b] for b in succs[j]) - 1
    rows: dict[int, list[int]] = {}
    for j in range(count):
        rows.setdefault(layer[j], []).append(j)
    slot = [0.0] * count
    for k in sorted(rows):  # order each layer by the mean slot of its inputs (stable for ties)
        row = sorted(rows[k], key=lambda j: (sum(slot[i] for i in preds[j]) / len(preds[j])) if preds[j] else j)
        for s, j in enumerate(row):
            slot[j] = float(s)
        rows[k] = row
    widest = max((len(r) for r in rows.values()), default=0)
    for row in rows.values():
        shift = (widest - len(row)) / 2
        for j in row:
            slot[j] += shift
    return [(layer[j], slot[j]) for j in range(count)]


def _short(name: str, limit: int = 48) -> str:
    """A long name's end, where paths name the node most precisely (``…/layer.6/attention/MatMul_1``;
    the full name is in the box's tooltip)."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def _color(t: float) -> str:
    for (t0, c0), (t1, c1) in zip(_RAMP, _RAMP[1:]):
        if t <= t1:
            f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(c0, c1))
    return "#" + "".join(f"{v:02x}" for v in _RAMP[-1][1])


def _shades(scores: Mapping[str, float], metric: str) -> tuple[dict[str, float], tuple[float, float] | None]:
    """Each scored node's shade in [0, 1], and the losses the lightest and darkest shades stand
    for (None when shaded by rank). A node's loss is its distance to the score of identical
    tensors, on a log scale from the smallest loss (at most :data:`_DECADES` decades below the
    largest) to the largest; where the metric's best is unknown (a user's metric), its rank in
    ``scores``' order (the sweep's: most sensitive first). A non-finite score is the darkest."""
    m = known_metric(metric)
    finite = {n: v for n, v in scores.items() if math.isfinite(v)}
    out = {n: 1.0 for n in scores if n not in finite}
    if m is None or m.best is None or not math.isfinite(m.best):  # by rank: the most sensitive darkest
        out.update({n: 1 - i / max(len(finite) - 1, 1) for i, n in enumerate(finite)})
        return out, None
    loss = {n: abs(v - m.best) for n, v in finite.items()}
    positive = [v for v in loss.values() if v > 0]
    if not positive:
        return {**out, **dict.fromkeys(loss, 0.0)}, (0.0, 0.0)
    top = max(positive)
    low = max(min(positive), top / 10**_DECADES)
    span = math.log10(top) - math.log10(low)
    out.update({n: 0.0 if v <= 0 else 1.0 if span == 0 else min(max((math.log10(v) - math.log10(low)) / span, 0.0), 1.0)
                for n, v in loss.items()})
    return out, (low, top)


def graph_map(graph: Mapping[str, Any], sensitivity: Mapping[str, Any], keep: Sequence[str] = (),
              lost: Sequence[str] = ()) -> str:
    """The graph section's HTML: ``graph`` as results.json holds it (``nodes``: ``[name, op_type,
    has calibration nodes]`` in topological order, ``edges``: index pairs, ``fixed``: the nodes
    that compute only from shapes and constants, not drawn unless in the sweep), coloured by
    ``sensitivity`` (a node sweep's results); ``keep``: the nodes the verdict recommends keeping in
    float (outlined), ``lost``: calibration nodes that round output channels away (dashed red)."""
    # [name, op_type, has calibration nodes] (results of before the third field: not known)
    nodes = [(str(n[0]), str(n[1]), n[2] if len(n) > 2 and isinstance(n[2], bool) else None)
             for n in as_list(get(graph, "nodes")) if isinstance(n, (list, tuple)) and len(n) in (2, 3)]
    metric = str((as_list(get(sensitivity, "metrics")) or ["cosine-similarity"])[0])
    entries = [e for e in as_list(get(sensitivity, "entries")) if isinstance(e, Mapping)]
    scores = {str(get(e, "name")): v for e in entries if (v := num(get(mapping(e, "scores"), metric))) is not None}
    rank = {str(get(e, "name")): k for k, e in enumerate(entries, 1)}
    # constants, and nodes that compute only from shapes and constants (a transformer's hundreds of
    # Shape → Gather → Concat chains), only clutter the picture: no quantization changes them
    fixed = {i for i in as_list(get(graph, "fixed")) if isinstance(i, int)}
    hidden = {i for i, (name, op, _) in enumerate(nodes) if (op == "Constant" or i in fixed) and name not in rank}
    drawn = [i for i in range(len(nodes)) if i not in hidden]
    if not drawn:
        return ""
    if len(drawn) > MAX_NODES:
        return f'<p class="muted small">The graph has {len(drawn)} nodes; it is drawn up to {MAX_NODES}.</p>'
    index = {i: k for k, i in enumerate(drawn)}
    edges = [(index[a], index[b]) for a, b in (e for e in as_list(get(graph, "edges")) if isinstance(e, (list, tuple)) and len(e) == 2)
             if isinstance(a, int) and isinstance(b, int) and a in index and b in index and a < b]
    where = layout(len(drawn), edges)
    shade, losses = _shades(scores, metric)
    kept, flagged = set(keep), set(lost)
    rightmost: dict[int, float] = {}  # layer -> the slot furthest right: a ranked node there gets its name beside it
    for layer, slot in where:
        rightmost[layer] = max(slot, rightmost.get(layer, slot))
    named = {k for k, i in enumerate(drawn) if rank.get(nodes[i][0], RANKED + 1) <= RANKED and where[k][1] == rightmost[where[k][0]]}
    width = (_PAD * 2 + (max((s for _, s in where), default=0) + 1) * (_W + _GAP)  # (the last gap: room for arcs)
             + (_NAME_ROOM if named else 0))
    height = _PAD * 2 + (max((layer for layer, _ in where), default=0) + 1) * _ROW - (_ROW - _H)

    def box(k: int) -> tuple[float, float]:
        layer, s = where[k]
        return _PAD + s * (_W + _GAP), _PAD + layer * _ROW

    lines = []
    for a, b in edges:
        (xa, ya), (xb, yb) = box(a), box(b)
        if where[b][0] - where[a][0] == 1:  # to the next layer: bottom to top
            x1, y1, x2, y2 = xa + _W / 2, ya + _H, xb + _W / 2, yb
            bend = (y2 - y1) / 2
            lines.append(f'<path d="M{x1:.0f} {y1:.0f}C{x1:.0f} {y1 + bend:.0f} {x2:.0f} {y2 - bend:.0f} {x2:.0f} {y2:.0f}"/>')
        else:  # past other layers: an arc on the right, so that it does not hide behind the boxes between
            x1, y1, x2, y2 = xa + _W, ya + _H / 2, xb + _W, yb + _H / 2
            out = max(x1, x2) + _ARC + 2 * min(where[b][0] - where[a][0], 8)
            lines.append(f'<path d="M{x1:.0f} {y1:.0f}C{out:.0f} {y1:.0f} {out:.0f} {y2:.0f} {x2:.0f} {y2:.0f}"/>')
    boxes = []
    for k, i in enumerate(drawn):
        name, op, quantized = nodes[i]
        x, y = box(k)
        if name in shade:
            value = scores[name]
            fill = _color(shade[name])
            cls = ("gnode" + (" kept" if name in kept else "") + ("" if math.isfinite(value) else " nf")
                   + (" lost" if name in flagged else ""))
            tip = (f"{name} ({op}): {metric} {fmt(value)}, #{rank[name]} of {len(entries)}" + (" · keep in float" if name in kept else "")
                   + (" · rounds whole output channels to 0" if name in flagged else ""))
        elif quantized is False:
            fill, cls, tip = "#ffffff", "gnode none", f"{name} ({op}): no calibration node of its own"
        else:  # left out of the sweep (interested nodes), or not known
            fill, cls, tip = "#ffffff", "gnode", f"{name} ({op}): not in the node sweep"
        ink = "#ffffff" if name in shade and shade[name] > 0.75 else "#1f2328"
        label = op if len(op) <= 15 else op[:14] + "…"
        tag = f'<text x="{x - 3:.0f}" y="{y + 14:.0f}" class="rank">#{rank[name]}</text>' if rank.get(name, RANKED + 1) <= RANKED else ""
        if k in named:  # (past the arcs of edges that skip layers)
            tag += f'<text x="{x + _W + _ARC + 20:.0f}" y="{y + 14:.0f}" class="gname">{esc(_short(name))}</text>'

        boxes.append(f'<g class="{cls}"><title>{esc(tip)}</title><rect x="{x:.0f}" y="{y:.0f}" width="{_W}" height="{_H}" rx="4" '
                     f'style="fill:{fill}"/><text x="{x + _W / 2:.0f}" y="{y + 14:.0f}" style="fill:{ink}">{esc(label)}</text>{tag}</g>')
    shapes = sum(1 for i in hidden if nodes[i][1] != "Constant")
    left_out = f"{shapes} node{'s' * (shapes != 1)} that compute only from shapes and constants" if shapes else ""
    scale = (f"loss (distance to the score of identical tensors), log scale from {esc(fmt(losses[0], 3))} (light) to "
             f"{esc(fmt(losses[1], 3))} (dark)" if losses is not None else "rank: the most sensitive darkest")
    legend = (f'<div class="gmap-legend small muted"><span class="ramp"></span>{scale} · <span class="swatch none"></span>'
              f'no calibration node of its own' + (' · <span class="swatch kept"></span>recommended to keep in float' if kept else "")
              + " · #k: rank in the node sweep" + (f" · not drawn: {left_out}" if left_out else "") + "</div>")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="the model graph coloured by sensitivity">'
           f'<g class="edges">{"".join(lines)}</g>{"".join(boxes)}</svg>')
    return legend + f'<div class="gmap">{svg}</div>'
