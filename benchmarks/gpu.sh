#!/usr/bin/env bash
# GPU benchmark in one command: a fresh venv with onnxruntime-gpu (the CPU onnxruntime uninstalled
# there), then benchmarks/gpu.py: the ResNet-18 sweep on CUDA against the same sweep on CPU and
# against a float forward pass on CUDA, as ratios measured in one process. A few minutes at most.
#
#   benchmarks/gpu.sh [--providers LIST] [--venv DIR] [--python PY] [--wheelhouse DIR]
#                     [--ort-gpu SPEC] [--no-install] [-- extra gpu.py arguments]
#
#   --providers   execution providers of the accelerator side
#                 (default CUDAExecutionProvider,CPUExecutionProvider). With CPUExecutionProvider
#                 alone the venv gets the CPU onnxruntime instead: the fallback path, runnable anywhere.
#   --venv        where to make the fresh venv (default: a new temporary folder, removed at exit)
#   --python      interpreter that makes the venv (default python3)
#   --wheelhouse  install only from this folder of wheels (for machines that reach no index; make it
#                 where pip works, for the target's Python: pip download -d DIR -c constraints.txt
#                 setuptools wheel numpy onnx protobuf tqdm matplotlib pyyaml pillow 'onnxruntime-gpu[cuda,cudnn]')
#   --ort-gpu     the onnxruntime-gpu requirement (default 'onnxruntime-gpu[cuda,cudnn]': PyPI's
#                 build, with CUDA and cuDNN as nvidia-* wheels)
#   --system-site-packages
#                 let the venv see the interpreter's packages (e.g. an image's nvidia-* CUDA/cuDNN
#                 wheels, found by onnxruntime.preload_dlls); the venv's own onnxruntime-gpu still wins
#   --no-install  skip the venv and run gpu.py with the current python (onnxruntime-gpu already there)
#
# onnxruntime-gpu must match the machine's CUDA major version (PyPI's default build and its
# [cuda,cudnn] extras: see https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider);
# pass another build with --ort-gpu. Prints the venv's onnxruntime packages, then gpu.py's ratios.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROVIDERS="CUDAExecutionProvider,CPUExecutionProvider"
VENV=""
PY="python3"
WHEELHOUSE=""
ORT_GPU="onnxruntime-gpu[cuda,cudnn]"
INSTALL=1
VENV_FLAGS=(--clear)
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --providers) PROVIDERS="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="$(cd "$2" && pwd)"; shift 2 ;;
    --ort-gpu) ORT_GPU="$2"; shift 2 ;;
    --system-site-packages) VENV_FLAGS+=(--system-site-packages); shift ;;
    --no-install) INSTALL=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
if [ "$INSTALL" = 0 ]; then
  exec "$PY" benchmarks/gpu.py --providers "$PROVIDERS" "${EXTRA[@]}"
fi

START=$(date +%s)
if [ -z "$VENV" ]; then
  VENV="$(mktemp -d "${TMPDIR:-/tmp}/ptqdebug-gpu-venv.XXXXXX")"
  trap 'rm -rf "$VENV"' EXIT
fi
"$PY" -m venv "${VENV_FLAGS[@]}" "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install -q --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then
  PIP+=(--no-index --find-links "$WHEELHOUSE")
fi
# ptqdebug and its dependencies at the tested versions, except onnxruntime (any build is replaced below)
CONSTRAINTS="$VENV/constraints.txt"
grep -v -i '^onnxruntime' constraints.txt > "$CONSTRAINTS" || true
"${PIP[@]}" -c "$CONSTRAINTS" -e .
"$VPY" -m pip uninstall -q -y onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
if [[ "$PROVIDERS" == *CUDA* || "$PROVIDERS" == *Tensorrt* ]]; then
  "${PIP[@]}" -c "$CONSTRAINTS" "$ORT_GPU"
else
  "${PIP[@]}" "$(grep -i '^onnxruntime==' constraints.txt || echo onnxruntime)"
fi
"$VPY" - <<'EOF'
import importlib.metadata as md
import onnxruntime as ort
dists = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("onnxruntime"))
print(f"venv: {', '.join(dists)}; onnxruntime {ort.__version__} ({ort.get_device()}), providers {ort.get_available_providers()}")
EOF
echo "install: $(( $(date +%s) - START )) s"
"$VPY" benchmarks/gpu.py --providers "$PROVIDERS" "${EXTRA[@]}"
echo "total: $(( $(date +%s) - START )) s"
