"""The whole journey on a small real model: ``ptqdebug demo``.

The bundled model is a CNN trained on scikit-learn's ``load_digits`` (1,797 real 8x8 digits; the
training script is ``examples/train_digits_cnn.py``), with 100 training digits for calibration and
360 held-out digits for evaluation. The demo calibrates it (:func:`ptqdebug.calibrate`), runs every
analysis (:func:`ptqdebug.runall`), and compares float and quantized top-1 accuracy on the held-out
digits.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DemoResult", "demo_files", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    calibrated_model: Path
    report: Path
    method: str
    output_cosine: float
    float_accuracy: float
    quantized_accuracy: float  # the calibrated model as ONNX defines it (what ptqdebug analyses)
    deployed_accuracy: float  # the same file as ONNX Runtime deploys it (integer kernels)
    holdout: int
    verdict: str
    calibration_samples: int  # what output_cosine averages over
    verdict_samples: int  # what the verdict judged on (runall's default, as the original's: the first one)
    most_sensitive: tuple[tuple[str, float], ...]
    seconds: float


def demo_files() -> tuple[Path, Path]:
    """The bundled float model and its data archive (``calibration``, ``holdout_x``, ``holdout_y``)."""
    root = resources.files(__package__)
    return Path(str(root / "digits_cnn.onnx")), Path(str(root / "digits_data.npz"))


def _accuracy(model: Path, x: np.ndarray, y: np.ndarray, deployed: bool = False) -> float:
    """Top-1 accuracy of ``model`` as ONNX defines it, or ``deployed`` as ONNX Runtime runs it by default."""
    import onnx

    from ..engine.runtime import deployed_session, make_session

    cpu = ["CPUExecutionProvider"]
    session = deployed_session(str(model), cpu, None) if deployed else make_session(onnx.load(str(model)), cpu, None)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def run_demo(out_dir: str | os.PathLike[str] = "demo_result", progress=None) -> DemoResult:  # noqa: ANN001
    """Calibrate the bundled model into ``out_dir/calibration``, run ``runall`` into
    ``out_dir/debug_result``, and measure held-out accuracy.

    A demo that fails or is interrupted removes the folders it created (``out_dir`` itself when it
    did not exist, else those of its two sub-folders that did not), so that it leaves no half-made
    result behind; what was there before is left as it was.
    """
    from ..report.files import check_dir

    out = check_dir(out_dir, "output folder")
    missing = [f for f in (out.absolute(), *out.absolute().parents) if not f.exists()]
    created = missing[-1:] or [f for f in (out / "calibration", out / "debug_result") if not f.exists()]
    try:
        return _run_demo(out, progress)
    except BaseException:
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _run_demo(out: Path, progress=None) -> DemoResult:  # noqa: ANN001
    from .. import runall
    from ..calibration import calibrate
    from ..report.files import ensure_dir

    t0 = time.perf_counter()
    out = ensure_dir(out, "output folder")
    model, data_file = demo_files()
    with np.load(data_file, allow_pickle=False) as data:
        calib, hx, hy = data["calibration"], data["holdout_x"], data["holdout_y"]
    samples = [{"image": calib[i: i + 1]} for i in range(len(calib))]
    step = (lambda title: progress(title)) if progress is not None else None  # noqa: E731
    cal = calibrate(model, samples, out / "calibration", progress=step("Calibrating") if step else None)
    run = runall(cal.model_path, cal.data_dir, out / "debug_result", progress=progress, check_deployment=True)
    node = run.sensitivities.get("node") or next(iter(run.sensitivities.values()))
    top = tuple((e.name, e.scores[node.metrics[0]]) for e in node.top(3))
    return DemoResult(
        out_dir=out, calibrated_model=Path(cal.model_path), report=run.save_dir / "index.html", method=cal.method,
        output_cosine=cal.cosine, float_accuracy=_accuracy(model, hx, hy),
        quantized_accuracy=_accuracy(Path(cal.model_path), hx, hy),
        deployed_accuracy=_accuracy(Path(cal.model_path), hx, hy, deployed=True), holdout=len(hy), verdict=run.verdict.summary,
        most_sensitive=top, seconds=time.perf_counter() - t0, calibration_samples=len(samples),
        verdict_samples=int(run.results["data"]["samples_used"]),
    )
