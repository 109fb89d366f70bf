"""Run every benchmark and print ratios measured in the same run (see benchmarks/README.md).

    python benchmarks/run.py [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, resnet18_qdq  # noqa: E402
from benchmarks.runall_cost import runall_cost  # noqa: E402
from benchmarks.sweep import sweep_costs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(f"machine: {machine()}; threads per session: {args.threads}")
    fpath, qpath, samples = resnet18_qdq(args.threads)
    res = sweep_costs(qpath, fpath, samples, args.threads)
    print(f"\nResNet-18-sized QDQ model ({res['calibration_nodes']} calibration nodes, {res['segments']} segments), 1 sample")
    print(f"  float forward pass (ORT, default optimizations): {res['forward_s'] * 1e3:.1f} ms; engine setup {res['setup_s']:.2f} s")
    for nt in ("activation", "weight", "node"):
        r = res[nt]
        line = (f"  {nt:<10} {r['candidates']:>3} candidates: median {r['median_per_candidate_s'] * 1e3:6.1f} ms/candidate"
                f" = {r['ratio_median_to_forward']:.2f}x forward; sweep {r['total_s']:.2f} s")
        if "speedup_vs_brute" in r:
            line += f"; brute force {r['brute_total_s']:.1f} s -> {r['speedup_vs_brute']:.1f}x faster (max |cos diff| {r['max_abs_cosine_diff']:.1e})"
        print(line)
    ra = runall_cost(qpath, samples)
    print(f"  runall (defaults, {ra['figures']:.0f} figures, report) {ra['runall_s']:.2f} s"
          f" (analyses {ra['runall_compute_s']:.2f} s) = {ra['ratio']:.1f}x the node sweep alone ({ra['node_sweep_s']:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "resnet18": res, "runall": ra}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
