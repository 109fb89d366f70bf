"""Shared pieces of the benchmarks: models, timing, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.builders import image_samples, quantize_qdq, resnet18  # noqa: E402

CACHE = ROOT / "benchmarks" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime {ort.__version__}"


def float_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def median_time(fn: Callable[[], object], repeat: int = 15, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def resnet18_qdq(threads: int) -> tuple[Path, Path, list[dict[str, np.ndarray]]]:
    """The ResNet-18-sized float model, its int8 per-channel QDQ version, and 8 samples."""
    import onnx

    CACHE.mkdir(parents=True, exist_ok=True)
    fpath, qpath = CACHE / "resnet18_float.onnx", CACHE / "resnet18_qdq.onnx"
    samples = image_samples(8, 224, seed=7)
    if not qpath.exists():
        onnx.save(resnet18(seed=0), fpath)
        quantize_qdq(fpath, qpath, samples[:4], per_channel=True, weight_pairs=True)
    return fpath, qpath, samples
