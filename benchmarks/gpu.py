"""ResNet-18 sweep on an accelerator against the same sweep on CPU and against a float forward pass
on the accelerator, measured in one process. Run through ``benchmarks/gpu.sh`` (fresh venv with
onnxruntime-gpu), or directly in any environment:

    python benchmarks/gpu.py [--providers CUDAExecutionProvider,CPUExecutionProvider] [--threads N] [--json PATH]

``--providers CPUExecutionProvider`` runs the accelerator side on CPU too (the fallback path: every
ratio against CPU is then about 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnxruntime as ort

from benchmarks.common import (
    float_session,
    machine,
    median_time,
    resnet18_qdq,
    source_state,
)

CPU = ["CPUExecutionProvider"]


def _providers(text: str) -> list[str]:
    out = [p.strip() for p in text.split(",") if p.strip()]
    if "CUDAExecutionProvider" in out and hasattr(ort, "preload_dlls"):
        try:  # onnxruntime-gpu >= 1.21: load CUDA/cuDNN from the nvidia-* wheels ([cuda,cudnn] extras)
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - reported below through get_available_providers
            print(f"  (onnxruntime.preload_dlls failed: {exc})")
    missing = [p for p in out if p not in ort.get_available_providers()]
    if missing:
        raise SystemExit(f"execution providers {missing} are not available in this onnxruntime "
                         f"({ort.__version__}, {ort.get_device()}): available {ort.get_available_providers()}. "
                         "Install onnxruntime-gpu (benchmarks/gpu.sh does) with CUDA 12 and cuDNN 9 libraries.")
    return out


def forward_session(path: Path, providers: list[str], threads: int) -> ort.InferenceSession:
    if providers == CPU:
        return float_session(path, threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=providers)


def sweep(qpath: Path, sample: dict[str, np.ndarray], threads: int, providers: list[str],
          node_types: tuple[str, ...]) -> dict[str, object]:
    """Engine setup, and per node type: warm sweep, then a timed sweep (per-candidate stamps) and its scores."""
    from ptqdebug.analyses.candidates import candidates_for
    from ptqdebug.analyses.sensitivity import node_sensitivity
    from ptqdebug.context import open_context

    t0 = time.perf_counter()
    ctx = open_context(qpath, [sample], threads=threads, providers=providers)
    ctx.reference(0, ctx.model.outputs)
    out: dict[str, object] = {"setup_s": time.perf_counter() - t0, "engine_providers": list(ctx.engine.providers)}
    sessions = getattr(ctx.engine, "_sessions", {})
    if sessions:  # what ONNX Runtime really gave the first segment session
        out["session_providers"] = next(iter(sessions.values()))[0].get_providers()
    for nt in node_types:
        cands = candidates_for(ctx.model, nt)
        node_sensitivity(ctx, cands, node_type=nt)  # warm
        stamps: list[float] = []
        ctx.scored.clear()  # time the runs, not the reuse of the warm sweep's scores
        t = time.perf_counter()
        res = node_sensitivity(ctx, cands, node_type=nt, progress=lambda d, n, s=stamps: s.append(time.perf_counter()))
        total = time.perf_counter() - t
        per = np.diff([t, *stamps])
        scores = {k: v["cosine-similarity"] for k, v in res.as_mapping().items()}
        out[nt] = {"candidates": len(cands), "total_s": total, "median_per_candidate_s": float(statistics.median(per)),
                   "scores": scores}
    return out


def gpu_costs(providers: list[str], threads: int, node_types: tuple[str, ...] = ("activation", "weight", "node")) -> dict[str, object]:
    fpath, qpath, samples = resnet18_qdq(threads)
    sample = samples[0]
    fwd_cpu = float_session(fpath, threads)
    fwd_acc = forward_session(fpath, providers, threads)
    res: dict[str, object] = {
        "providers": providers,
        "forward_cpu_s": median_time(lambda: fwd_cpu.run(None, sample), repeat=21, warmup=3),
        "forward_acc_s": median_time(lambda: fwd_acc.run(None, sample), repeat=21, warmup=3),
        "forward_acc_session_providers": fwd_acc.get_providers(),
    }
    res["cpu"] = sweep(qpath, sample, threads, CPU, node_types)
    res["acc"] = sweep(qpath, sample, threads, providers, node_types)
    for nt in node_types:
        c, a = res["cpu"][nt], res["acc"][nt]  # type: ignore[index]
        a["ratio_to_cpu_sweep"] = a["median_per_candidate_s"] / c["median_per_candidate_s"]
        a["ratio_to_acc_forward"] = a["median_per_candidate_s"] / res["forward_acc_s"]  # type: ignore[operator]
        c["ratio_to_cpu_forward"] = c["median_per_candidate_s"] / res["forward_cpu_s"]  # type: ignore[operator]
        a["max_abs_cosine_diff_vs_cpu"] = max(abs(a["scores"][k] - c["scores"][k]) for k in c["scores"])
    return res


def print_gpu(r: dict[str, object]) -> None:
    acc = ",".join(r["providers"])  # type: ignore[arg-type]
    print(f"\nResNet-18-sized QDQ model, 1 sample; accelerator side: {acc} "
          f"(engine sessions got {r['acc'].get('session_providers')}; forward session got {r['forward_acc_session_providers']})")  # type: ignore[union-attr]
    print(f"  float forward pass: CPU {r['forward_cpu_s'] * 1e3:.2f} ms, accelerator {r['forward_acc_s'] * 1e3:.2f} ms "
          f"({r['forward_cpu_s'] / r['forward_acc_s']:.1f}x faster)")  # type: ignore[operator]
    print(f"  engine setup: CPU {r['cpu']['setup_s']:.2f} s, accelerator {r['acc']['setup_s']:.2f} s")  # type: ignore[index]
    for nt in ("activation", "weight", "node"):
        if nt not in r["acc"]:  # type: ignore[operator]
            continue
        c, a = r["cpu"][nt], r["acc"][nt]  # type: ignore[index]
        print(f"  {nt:<10} {c['candidates']:>3} candidates: CPU {c['median_per_candidate_s'] * 1e3:6.2f} ms/candidate "
              f"({c['ratio_to_cpu_forward']:.2f}x CPU forward); accelerator {a['median_per_candidate_s'] * 1e3:6.2f} ms/candidate "
              f"= {a['ratio_to_cpu_sweep']:.2f}x the CPU sweep, {a['ratio_to_acc_forward']:.2f}x its forward; "
              f"sweeps {c['total_s']:.2f} s / {a['total_s']:.2f} s; max |cos diff| vs CPU {a['max_abs_cosine_diff_vs_cpu']:.1e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    providers = _providers(args.providers)
    print(f"machine: {machine()} ({ort.get_device()}; available {ort.get_available_providers()}); threads per session: {args.threads}")
    print(f"ptqdebug source: {source_state()}")
    res = gpu_costs(providers, args.threads)
    print_gpu(res)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "gpu": res}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
