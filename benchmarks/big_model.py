"""A calibrated model over 2 GB (weights in external data), end to end, checked against numpy.

    python benchmarks/big_model.py [--gib 2.2] [--dir DIR]

Builds x [1, K] → (Q/DQ) → MatMul(W1) → Relu → (Q/DQ) → MatMul(W2) → Relu → (Q/DQ) → MatMul(W3) → y,
each weight a float initializer with a per-channel int8 Q→DQ pair, the three weights together
``--gib`` GiB, saved with ``save_as_external_data``. Then runs the weight and activation sweeps and
``plot_acc_error`` and checks every score against the same network computed in numpy (float64),
and prints the wall time and the peak RSS of the process. Nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ptqdebug as dbg  # noqa: E402
from benchmarks.common import machine  # noqa: E402


def fake_quant(x: np.ndarray, scale: np.ndarray, zp: int, lo: int, hi: int, axis: int | None = None) -> np.ndarray:
    s = scale if axis is None else np.expand_dims(scale, [a for a in range(x.ndim) if a != axis])
    return ((np.clip(np.rint(x / s) + zp, lo, hi) - zp) * s).astype(np.float32)


def build(gib: float, path: Path, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, int]]]:
    """The model at ``path``; returns its weights and each activation pair's (scale, zero point)."""
    k = 128
    n = int(gib * 2**30 / 4 / 3 / k)  # three weights of k x n, k x n... laid out so the chain fits
    rng = np.random.default_rng(seed)
    shapes = {"w1": (k, n), "w2": (n, k), "w3": (k, k)}
    extra = int(gib * 2**30 / 4) - 2 * k * n  # the third weight takes what is left: (k, m)
    shapes["w3"] = (k, max(k, extra // k))
    weights = {name: (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[0])).astype(np.float32)
               for name, shape in shapes.items()}
    acts = {"x": (np.array(0.02, np.float32), 0), "h1": (np.array(0.01, np.float32), 0), "h2": (np.array(0.02, np.float32), 0)}
    nodes, inits = [], []
    chain = [("x", "w1", "h1"), ("h1", "w2", "h2"), ("h2", "w3", "y")]
    for i, (src, w, out) in enumerate(chain):
        s, z = acts[src]
        inits += [numpy_helper.from_array(s, f"{src}_s"), numpy_helper.from_array(np.array(z, np.int8), f"{src}_z")]
        nodes += [helper.make_node("QuantizeLinear", [src, f"{src}_s", f"{src}_z"], [f"{src}_q"], name=f"{src}_QuantizeLinear"),
                  helper.make_node("DequantizeLinear", [f"{src}_q", f"{src}_s", f"{src}_z"], [f"{src}_dq"], name=f"{src}_DequantizeLinear")]
        ws = (np.abs(weights[w]).max(axis=0) / 127).astype(np.float32)
        inits += [numpy_helper.from_array(weights[w], w), numpy_helper.from_array(ws, f"{w}_s"),
                  numpy_helper.from_array(np.zeros(ws.shape, np.int8), f"{w}_z")]
        nodes += [helper.make_node("QuantizeLinear", [w, f"{w}_s", f"{w}_z"], [f"{w}_q"], name=f"{w}_QuantizeLinear", axis=1),
                  helper.make_node("DequantizeLinear", [f"{w}_q", f"{w}_s", f"{w}_z"], [f"{w}_dq"], name=f"{w}_DequantizeLinear", axis=1)]
        mm = out if i == 2 else f"{out}_mm"
        nodes.append(helper.make_node("MatMul", [f"{src}_dq", f"{w}_dq"], [mm], name=f"matmul_{i + 1}"))
        if i < 2:
            nodes.append(helper.make_node("Relu", [mm], [out], name=f"relu_{i + 1}"))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shapes["w3"][1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin")
    return weights, acts


def numpy_forward(x: np.ndarray, weights: dict[str, np.ndarray], acts: dict[str, tuple[np.ndarray, int]],
                  enabled: set[str]) -> np.ndarray:
    h = x.astype(np.float32)
    for i, (src, w) in enumerate((("x", "w1"), ("h1", "w2"), ("h2", "w3"))):
        if f"{src}_QuantizeLinear" in enabled:
            h = fake_quant(h, acts[src][0], acts[src][1], -128, 127)
        wv = weights[w]
        if f"{w}_QuantizeLinear" in enabled:
            wv = fake_quant(wv, np.abs(wv).max(axis=0) / 127, 0, -128, 127, axis=1)
        h = _matmul64(h, wv).astype(np.float32)
        if i < 2:
            h = np.maximum(h, 0)
    return h


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _matmul64(h: np.ndarray, w: np.ndarray, rows: int = 1 << 16) -> np.ndarray:
    """h @ w in float64, a block of w's rows at a time (w is up to ~1 GB)."""
    out = np.zeros((h.shape[0], w.shape[1]))
    for a in range(0, w.shape[0], rows):
        out += h[:, a:a + rows].astype(np.float64) @ w[a:a + rows].astype(np.float64)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.2)
    ap.add_argument("--dir", type=Path, help="where to write the model (default: a temporary folder)")
    ap.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # child process: write the model only
    args = ap.parse_args()
    if args.build:
        build(args.gib, args.build)
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "big.onnx"
        t = time.perf_counter()  # built in a child, so this process's peak RSS is ptqdebug's
        subprocess.run([sys.executable, __file__, "--gib", str(args.gib), "--build", str(path)], check=True)
        print(f"machine: {machine()}")
        print(f"model: {path.stat().st_size} B graph + {(Path(tmp) / 'weights.bin').stat().st_size / 2**30:.2f} GiB "
              f"external data; built in {time.perf_counter() - t:.1f} s")
        x = {"x": np.random.default_rng(1).standard_normal((1, 128)).astype(np.float32)}
        t = time.perf_counter()
        ctx = dbg.open_context(str(path), [x], cache=False)
        print(f"open_context: {time.perf_counter() - t:.1f} s, {len(ctx.engine.plan.segments)} segments")
        scores = {}
        for node_type in ("weight", "activation"):
            t = time.perf_counter()
            got = dbg.sensitivity_of_nodes(ctx, node_type=node_type).as_mapping()
            print(f"{node_type} sweep: {len(got)} candidates in {time.perf_counter() - t:.1f} s")
            scores.update({k: v["cosine-similarity"] for k, v in got.items()})
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            curves = dbg.plot_acc_error([x], ctx, quantize_node=["weight", "activation"], save_dir=out)
            print(f"plot_acc_error: {time.perf_counter() - t:.1f} s, {len(curves)} curves")
        del ctx
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"peak RSS of the ptqdebug part: {rss:.2f} GiB")

        model = onnx.load(str(path))  # the brute force: the same network in numpy, float64 products
        weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("w1", "w2", "w3")}
        acts = {n: (numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == f"{n}_s")), 0)
                for n in ("x", "h1", "h2")}
        del model
        float_y = numpy_forward(x["x"], weights, acts, set())
        worst = max(abs(v - cosine(float_y, numpy_forward(x["x"], weights, acts, {k}))) for k, v in scores.items())
        print(f"max |cosine - numpy float64| over {len(scores)} candidates: {worst:.1e}")
        return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
