"""ONNX Runtime's own QDQ debugging (``qdq_loss_debug``) against ptqdebug's cumulative error, same
ResNet-18-sized QDQ model, same samples: wall time and peak RSS, each side in a fresh process.

    python benchmarks/ort_debug.py [--samples 2,4,8] [--repeat R]

ORT side (its cumulative-error analysis): ``modify_model_output_intermediate_tensors`` on the float
and on the QDQ model, ``collect_activations`` of both over a ``CalibrationDataReader``,
``create_activation_matching``, then ``compute_signal_to_quantization_noice_ratio`` (float vs the
QDQ model's tensor) for every matched tensor.

ptqdebug side: ``open_context(qdq_path, samples)``, then ``accumulate_error`` of the calibrated
configuration for each sample (metric ``sqnr``, as ORT's).

Wall time is counted inside each process after the imports (model read, sessions, every sample);
peak RSS is the process's own high-water mark (VmHWM, what ``ru_maxrss`` reports for a process started
by a small parent; see ``common.peak_rss_mb``), imports included: the same libraries on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_rss_mb, print_header, resnet18_qdq


def _peak_mb() -> float:
    return peak_rss_mb()


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ort_side(fpath: Path, qpath: Path, samples: list[dict[str, np.ndarray]]) -> dict[str, object]:
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, data: list[dict[str, np.ndarray]]) -> None:
            self._it = iter(data)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    base = _peak_mb()
    phases: dict[str, float] = {}
    t0 = t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        aug_f, aug_q = Path(d) / "float_aug.onnx", Path(d) / "qdq_aug.onnx"
        modify_model_output_intermediate_tensors(str(fpath), str(aug_f))
        modify_model_output_intermediate_tensors(str(qpath), str(aug_q))
        phases["augment"] = time.perf_counter() - t
        t = time.perf_counter()
        float_acts = collect_activations(str(aug_f), Reader(samples))
        qdq_acts = collect_activations(str(aug_q), Reader(samples))
        phases["collect"] = time.perf_counter() - t
    t = time.perf_counter()
    matched = create_activation_matching(qdq_acts, float_acts)
    sqnr = {name: compute_signal_to_quantization_noice_ratio(m["float"], m["post_qdq"])
            for name, m in matched.items() if "float" in m}
    phases["match_and_sqnr"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    held = sum(a.nbytes for acts in (float_acts, qdq_acts) for arrs in acts.values() for a in arrs)
    return {"wall_s": wall, "phases_s": phases, "peak_rss_mb": _peak_mb(), "ru_maxrss_mb": _maxrss_mb(),
            "rss_after_imports_mb": base, "tensors": len(sqnr), "activations_held_mb": held / 2**20,
            "sqnr_first_last": [float(v) for v in list(sqnr.values())[:: max(1, len(sqnr) - 1)]]}


def _ptq_side(qpath: Path, samples: list[dict[str, np.ndarray]], threads: int | None) -> dict[str, object]:
    import ptqdebug
    from ptqdebug.analyses.accumulate import Configuration, accumulate_error

    base = _peak_mb()
    phases: dict[str, float] = {}
    t0 = t = time.perf_counter()
    ctx = ptqdebug.open_context(qpath, samples, threads=threads)
    phases["open_context"] = time.perf_counter() - t
    t = time.perf_counter()
    configs = [Configuration("calibrated", ctx.model.calibrated_configuration)]
    results = [accumulate_error(ctx, configs, prefix="calibrated", metric="sqnr", samples=(i,)) for i in range(len(samples))]
    phases["accumulate"] = time.perf_counter() - t
    wall = time.perf_counter() - t0
    vals = results[0].curves[0].values
    return {"wall_s": wall, "phases_s": phases, "peak_rss_mb": _peak_mb(), "ru_maxrss_mb": _maxrss_mb(),
            "rss_after_imports_mb": base, "tensors": len(results[0].tensors), "sqnr_first_last_sample0": [float(vals[0]), float(vals[-1])]}


def _child(side: str, n: int, threads: int | None) -> dict[str, object]:
    fpath, qpath, samples = resnet18_qdq(threads or 2)
    import onnxruntime  # noqa: F401  (imports on both sides before the clock starts)

    if side == "ptqdebug":
        import ptqdebug  # noqa: F401
        from ptqdebug.analyses import accumulate  # noqa: F401

        return _ptq_side(qpath, samples[:n], threads)
    from onnxruntime.quantization import qdq_loss_debug  # noqa: F401

    return _ort_side(fpath, qpath, samples[:n])


def run_child(side: str, n: int, threads: int | None) -> dict[str, object]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--n", str(n), "--threads", str(threads or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"{side} subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ort_debug_compare(counts: tuple[int, ...] = (2, 4, 8), repeat: int = 3, threads: int | None = None) -> dict[str, object]:
    resnet18_qdq(threads or 2)  # build the models once, outside the timed processes
    out: dict[str, object] = {"counts": list(counts), "repeat": repeat, "threads": threads, "rows": {}}
    for n in counts:
        runs: dict[str, list[dict[str, object]]] = {"ort": [], "ptqdebug": []}
        for _ in range(repeat):  # interleaved
            for side, rs in runs.items():
                rs.append(run_child(side, n, threads))
        row = {}
        for side, rs in runs.items():
            row[side] = {"wall_s": statistics.median(r["wall_s"] for r in rs),  # type: ignore[misc]
                         "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),  # type: ignore[misc]
                         "rss_after_imports_mb": statistics.median(r["rss_after_imports_mb"] for r in rs),  # type: ignore[misc]
                         "phases_s": {k: statistics.median(r["phases_s"][k] for r in rs) for k in rs[0]["phases_s"]},  # type: ignore[index, union-attr]
                         "tensors": rs[0]["tensors"], "extra": {k: v for k, v in rs[0].items() if k.startswith(("sqnr", "activations"))}}
        row["wall_ratio_ort_to_ptqdebug"] = row["ort"]["wall_s"] / row["ptqdebug"]["wall_s"]
        row["rss_ratio_ort_to_ptqdebug"] = row["ort"]["peak_rss_mb"] / row["ptqdebug"]["peak_rss_mb"]
        out["rows"][str(n)] = row  # type: ignore[index]
    return out


def print_ort_debug(r: dict[str, object]) -> None:
    print(f"\nORT qdq_loss_debug against ptqdebug cumulative error (ResNet-18-sized QDQ; fresh process per run, "
          f"median of {r['repeat']}; ORT default threads)")
    for n, row in r["rows"].items():  # type: ignore[union-attr]
        o, p = row["ort"], row["ptqdebug"]
        print(f"  {n} samples: ORT {o['wall_s']:.2f} s, peak RSS {o['peak_rss_mb']:.0f} MB ({o['tensors']} tensors; "
              f"{', '.join(f'{k} {v:.2f}' for k, v in o['phases_s'].items())}; keeps {o['extra'].get('activations_held_mb', 0):.0f} MB of tensors)")
        print(f"  {'':>{len(n)}}          ptqdebug {p['wall_s']:.2f} s, peak RSS {p['peak_rss_mb']:.0f} MB ({p['tensors']} tensors; "
              f"{', '.join(f'{k} {v:.2f}' for k, v in p['phases_s'].items())})")
        print(f"  {'':>{len(n)}}          ORT/ptqdebug: time {row['wall_ratio_ort_to_ptqdebug']:.2f}x, peak RSS "
              f"{row['rss_ratio_ort_to_ptqdebug']:.2f}x (RSS after imports: ORT {o['rss_after_imports_mb']:.0f} MB, "
              f"ptqdebug {p['rss_after_imports_mb']:.0f} MB)")
    rows = r["rows"]  # type: ignore[assignment]
    first, last = str(min(int(k) for k in rows)), str(max(int(k) for k in rows))  # type: ignore[union-attr]
    for side in ("ort", "ptqdebug"):
        a, b = rows[first][side]["peak_rss_mb"], rows[last][side]["peak_rss_mb"]  # type: ignore[index]
        per = (b - a) / (int(last) - int(first))
        print(f"  {side:<8} peak RSS growth {first} -> {last} samples: {a:.0f} -> {b:.0f} MB ({per:+.0f} MB per sample)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default="2,4,8", help="sample counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ptqdebug threads per session (0 = ORT default, like ORT's side)")
    ap.add_argument("--child", choices=["ort", "ptqdebug"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=8, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.n, args.threads or None)))
        return 0
    print_header()
    counts = tuple(int(x) for x in args.samples.split(","))
    print_ort_debug(ort_debug_compare(counts, args.repeat, args.threads or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
