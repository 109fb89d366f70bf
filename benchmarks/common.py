"""Shared pieces of the benchmarks: models, timing, machine description."""

from __future__ import annotations

import atexit
import inspect
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.builders import image_samples, quantize_qdq, resnet18

CACHE = ROOT / "benchmarks" / "results"

# Timed runs must compute, never read ptqdebug's results cache (~/.cache/ptqdebug): every benchmark
# process (and its subprocesses, which inherit the variable) gets an empty cache folder of its own,
# and calls that take ``cache=`` get ``cache=False`` (see ``no_cache``).
if "PTQDEBUG_BENCH_CACHE" not in os.environ:
    os.environ["PTQDEBUG_BENCH_CACHE"] = os.environ["PTQDEBUG_CACHE_DIR"] = tempfile.mkdtemp(prefix="ptqdebug-bench-")
    atexit.register(shutil.rmtree, os.environ["PTQDEBUG_BENCH_CACHE"], True)


def no_cache(fn: Callable[..., object]) -> dict[str, object]:
    """``{"cache": False}`` when ``fn`` accepts ``cache=`` (ptqdebug's results cache), else ``{}``."""
    try:
        return {"cache": False} if "cache" in inspect.signature(fn).parameters else {}
    except (TypeError, ValueError):
        return {}


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


def peak_rss_mb() -> float:
    """This process's peak resident set size (MB): VmHWM of /proc/self/status, else ru_maxrss.

    ``getrusage().ru_maxrss`` is not clean in a child started by a big parent: Linux carries the
    parent's high-water mark into the child at exec (subprocess uses vfork), so every child of a
    3 GB parent reports at least 3 GB. VmHWM belongs to the process's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def source_state() -> str:
    """The ptqdebug source measured: commit, and a digest of uncommitted changes under src/ (others
    edit the tree while benchmarks run; numbers from different source states are not comparable)."""
    import hashlib
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "src"], cwd=ROOT, capture_output=True, check=True).stdout
        untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "src"], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not diff and not untracked:
        return f"commit {head}, clean"
    h = hashlib.sha256(diff)
    for name in sorted(untracked):
        h.update(name.encode())
        h.update((ROOT / name).read_bytes())
    return f"commit {head} + uncommitted changes to src/ (digest {h.hexdigest()[:10]})"


def print_header(threads: int | None = None) -> None:
    """The first lines of a benchmark's output: the machine (and threads) and the source measured."""
    print(f"machine: {machine()}" + (f"; threads per session: {threads}" if threads else ""))
    print(f"ptqdebug source: {source_state()}")


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
