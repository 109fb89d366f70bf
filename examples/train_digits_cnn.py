#!/usr/bin/env python3
"""Train the small digits CNN that ships with ptqdebug as its demo model.

This script is *not* imported by the ``ptqdebug`` package; it exists so that
the demo artefacts in ``src/ptqdebug/demo/`` can be regenerated and audited.

Data
    scikit-learn's ``load_digits()``: 1,797 real handwritten digits, 8x8
    pixels, integer intensities 0..16, ten classes.  The data ships inside
    scikit-learn, so nothing is downloaded.

Split (fixed seed, stratified by label)
    * 80 % training split (1,437 images), used to fit the network;
    * 20 % held-out split (360 images), never used for training or
      calibration, used only to measure accuracy;
    * ``calibration``: 100 images drawn from the *training* split
      (10 per class), meant for PTQ calibration.

Preprocessing
    ``x = pixels.astype(float32) / 16.0`` -> values in [0, 1], shape
    [N, 1, 8, 8].  The arrays saved to ``digits_data.npz`` are already
    preprocessed: they are exactly what is fed to the model's ``image`` input.

Model (plain float32, no BatchNorm, ~5 Conv/Gemm nodes)
    conv1  Conv 1->16, 3x3, pad 1   + ReLU         8x8
    conv2  Conv 16->32, 3x3, pad 1  + ReLU         8x8
    pool   MaxPool 2x2                              4x4
    conv3  Conv 32->64, 3x3, pad 1  + ReLU         4x4
    conv4  Conv 64->64, 3x3, pad 1; Add(conv3 out)  4x4  (residual)
           + ReLU
    gap    GlobalAveragePool -> Flatten             64
    fc     Linear 64->10 (Gemm)                     logits

Outputs (written next to the package, relative to this file)
    src/ptqdebug/demo/digits_cnn.onnx
        opset 17, TorchScript exporter (``dynamo=False``) so nodes get
        readable names such as ``/conv1/Conv``; input ``image`` float32
        [N, 1, 8, 8] with a dynamic batch axis ``N``; output ``logits``
        float32 [N, 10].
    src/ptqdebug/demo/digits_data.npz
        ``np.savez_compressed`` with ``calibration`` float32 [100,1,8,8],
        ``holdout_x`` float32 [360,1,8,8], ``holdout_y`` int64 [360].
        No object arrays: loads with ``allow_pickle=False``.

Requirements
    pip install torch==2.13.0 scikit-learn onnx numpy
    (optional) pip install onnxruntime   # ORT parity + int8 sanity checks

Usage
    python examples/train_digits_cnn.py               # train, export, verify
    python examples/train_digits_cnn.py --check-int8  # + int8 QDQ report
    python examples/train_digits_cnn.py --out-dir /tmp/demo  # elsewhere

Training takes a few seconds on 2 CPU cores.  Everything is seeded and
PyTorch runs in deterministic mode on a fixed number of threads, so re-runs
on the same machine and library versions produce the same weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
HOLDOUT_FRACTION = 0.2
CALIBRATION_PER_CLASS = 10  # 10 classes -> 100 calibration images
EPOCHS = 60
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
OPSET = 17
NUM_THREADS = 2

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "src" / "ptqdebug" / "demo"
MODEL_FILENAME = "digits_cnn.onnx"
DATA_FILENAME = "digits_data.npz"


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def preprocess(pixels: np.ndarray) -> np.ndarray:
    """Map raw 0..16 digit intensities to float32 [N, 1, 8, 8] in [0, 1]."""
    x = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 8, 8) / np.float32(16.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def make_splits(seed: int = SEED):
    """Return (train_x, train_y, calibration, holdout_x, holdout_y)."""
    digits = load_digits()
    x = preprocess(digits.images)
    y = digits.target.astype(np.int64)

    train_x, holdout_x, train_y, holdout_y = train_test_split(
        x, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed
    )

    # Calibration: a class-balanced subset of the *training* split.
    rng = np.random.default_rng(seed)
    calib_idx = []
    for cls in range(10):
        cls_idx = np.flatnonzero(train_y == cls)
        calib_idx.extend(rng.choice(cls_idx, size=CALIBRATION_PER_CLASS, replace=False))
    calib_idx = np.sort(np.asarray(calib_idx))
    calibration = np.ascontiguousarray(train_x[calib_idx], dtype=np.float32)

    return (
        np.ascontiguousarray(train_x, dtype=np.float32),
        np.ascontiguousarray(train_y, dtype=np.int64),
        calibration,
        np.ascontiguousarray(holdout_x, dtype=np.float32),
        np.ascontiguousarray(holdout_y, dtype=np.int64),
    )


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
class DigitsCNN(nn.Module):
    """Tiny residual CNN for 8x8 digits (4 Conv + 1 Gemm in ONNX)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)  # exported as GlobalAveragePool
        self.fc = nn.Linear(64, 10)
        # ReLUs as modules (not F.relu) so the exported nodes are named
        # /relu1/Relu ... /relu4/Relu rather than /Relu, /Relu_1, ...
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()
        self.relu4 = nn.ReLU()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(image))
        x = self.relu2(self.conv2(x))
        x = self.pool(x)
        x = self.relu3(self.conv3(x))
        x = self.relu4(x + self.conv4(x))  # residual Add (node "/Add")
        x = self.gap(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def set_determinism(seed: int = SEED) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(NUM_THREADS)
    torch.use_deterministic_algorithms(True)


def train(train_x: np.ndarray, train_y: np.ndarray, seed: int = SEED) -> DigitsCNN:
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    xt = torch.from_numpy(train_x)
    yt = torch.from_numpy(train_y)
    gen = torch.Generator().manual_seed(seed)
    n = len(xt)

    model.train()
    for epoch in range(EPOCHS):
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            print(f"  epoch {epoch + 1:3d}/{EPOCHS}  train loss {total_loss / n:.4f}")
    model.eval()
    return model


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).numpy()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: Path) -> None:
    import onnx

    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is "legacy"; it is
        # chosen on purpose here for its readable, module-scoped node names.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,  # classic TorchScript exporter: names like /conv1/Conv
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
            do_constant_folding=True,
            export_params=True,
        )

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)

    # Every node must carry a non-empty, unique name (ptqdebug keys on them).
    names = [node.name for node in m.graph.node]
    if any(not nm for nm in names):
        raise RuntimeError("exported graph has an unnamed node")
    if len(set(names)) != len(names):
        raise RuntimeError(f"exported graph has duplicate node names: {names}")

    # Interface sanity checks.
    (inp,) = m.graph.input
    (out,) = m.graph.output
    assert inp.name == "image" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["N", 1, 8, 8], in_dims
    assert out_dims == ["N", 10], out_dims
    opset = {o.domain: o.version for o in m.opset_import}
    assert opset.get("", opset.get("ai.onnx")) == OPSET, opset


# --------------------------------------------------------------------------
# Optional onnxruntime checks
# --------------------------------------------------------------------------
def ort_logits(model_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = NUM_THREADS
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"image": x})[0]


def int8_report(
    model_path: Path,
    calibration: np.ndarray,
    holdout_x: np.ndarray,
    holdout_y: np.ndarray,
    float_logits: np.ndarray,
) -> None:
    """Quantize to int8 QDQ (per-channel) in a temp dir and report accuracy."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, data: np.ndarray) -> None:
            self._it = iter([{"image": data[i : i + 1]} for i in range(len(data))])

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        q_path = Path(tmp) / "digits_cnn.int8.onnx"
        quantize_static(
            str(model_path),
            str(q_path),
            Reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        q_logits = ort_logits(q_path, holdout_x)
        q_size = q_path.stat().st_size

    a = float_logits.astype(np.float64)
    b = q_logits.astype(np.float64)
    cos_per_sample = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    cos_flat = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    print("int8 QDQ (per_channel=True, U8 activations / S8 weights, MinMax calib):")
    print(f"  quantized model size      : {q_size} bytes (not shipped)")
    print(f"  held-out top-1 accuracy   : {accuracy(q_logits, holdout_y):.4f}")
    print(f"  top-1 agreement vs float  : {agree:.4f}")
    print(f"  logits cosine (flattened) : {cos_flat:.6f}")
    print(
        f"  logits cosine per sample  : mean {cos_per_sample.mean():.6f}, "
        f"min {cos_per_sample.min():.6f}"
    )


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where to write {MODEL_FILENAME} and {DATA_FILENAME} "
        f"(default: {DEFAULT_OUT_DIR.relative_to(REPO_ROOT)})",
    )
    ap.add_argument(
        "--check-int8",
        action="store_true",
        help="also quantize with onnxruntime (QDQ, per-channel) and report",
    )
    args = ap.parse_args(argv)

    set_determinism(SEED)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILENAME
    data_path = out_dir / DATA_FILENAME

    train_x, train_y, calibration, holdout_x, holdout_y = make_splits(SEED)
    print(
        f"data: train {train_x.shape}, calibration {calibration.shape}, holdout {holdout_x.shape}"
    )

    t0 = time.perf_counter()
    model = train(train_x, train_y, SEED)
    print(f"trained in {time.perf_counter() - t0:.1f}s")

    t_logits = torch_logits(model, holdout_x)
    t_acc = accuracy(t_logits, holdout_y)
    print(
        f"torch held-out top-1 accuracy: {t_acc:.4f} "
        f"({int(round(t_acc * len(holdout_y)))}/{len(holdout_y)})"
    )

    export_onnx(model, model_path)
    np.savez_compressed(
        data_path, calibration=calibration, holdout_x=holdout_x, holdout_y=holdout_y
    )

    # Re-load the data exactly as a consumer would and check it.
    with np.load(data_path, allow_pickle=False) as d:
        assert d["calibration"].dtype == np.float32 and d["calibration"].shape == (100, 1, 8, 8)
        assert d["holdout_x"].dtype == np.float32 and d["holdout_x"].shape[1:] == (1, 8, 8)
        assert d["holdout_y"].dtype == np.int64 and len(d["holdout_y"]) == len(d["holdout_x"])
        assert np.array_equal(d["holdout_x"], holdout_x)

    print(f"wrote {model_path} ({model_path.stat().st_size} bytes)")
    print(f"wrote {data_path} ({data_path.stat().st_size} bytes)")

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime not installed: skipping ORT parity check")
        return 0

    o_logits = ort_logits(model_path, holdout_x)
    o_acc = accuracy(o_logits, holdout_y)
    max_diff = float(np.abs(o_logits - t_logits).max())
    print(
        f"onnxruntime held-out top-1 accuracy: {o_acc:.4f} "
        f"(max |logit diff| vs torch {max_diff:.2e})"
    )
    if o_acc != t_acc:
        print("ERROR: ORT and torch accuracies differ", file=sys.stderr)
        return 1

    if args.check_int8:
        int8_report(model_path, calibration, holdout_x, holdout_y, o_logits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
