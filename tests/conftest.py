"""Shared fixtures: real QDQ models made by ONNX Runtime from float CNNs built here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.builders import image_samples, quantize_qdq, small_cnn  # noqa: E402

def pytest_configure(config: pytest.Config) -> None:
    """Keep the results cache of the test run private (and out of the user's home)."""
    import os
    import tempfile

    os.environ.setdefault("PTQDEBUG_CACHE_DIR", tempfile.mkdtemp(prefix="ptqdebug-test-cache-"))


QDQ_SETTINGS = {
    # name: quantize_qdq keyword arguments
    "pc_int8_pairs": dict(per_channel=True, activation_type="int8", weight_pairs=True),
    "pc_int8_pairs_keep": dict(per_channel=True, activation_type="int8", weight_pairs=True, keep_activations=True),
    "pt_uint8_pairs_keep": dict(per_channel=False, activation_type="uint8", weight_type="uint8", weight_pairs=True, keep_activations=True),
    "pc_int8_stored": dict(per_channel=True, activation_type="int8", weight_pairs=False),
    "pc_int8_keep_sym": dict(per_channel=True, activation_type="int8", weight_pairs=True, keep_activations=True,
                             symmetric_activations=True),
    "pc_int16_keep_sym": dict(per_channel=True, activation_type="int16", weight_type="int8", weight_pairs=True,
                              keep_activations=True, symmetric_activations=True),
}


@pytest.fixture(scope="session")
def cnn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float CNN, its samples as a calibration_data folder, and its QDQ versions."""
    d = tmp_path_factory.mktemp("cnn")
    model = small_cnn(seed=1, size=16, channels=(8, 16))
    onnx.save(model, d / "float.onnx")
    samples = image_samples(6, 16, seed=3)
    data = d / "calibration_data" / "input"
    data.mkdir(parents=True)
    for i, s in enumerate(samples):
        np.save(data / f"{i}.npy", s["input"])
    for name, kw in QDQ_SETTINGS.items():
        quantize_qdq(d / "float.onnx", d / f"{name}.onnx", samples[:4], **kw)
    return d


@pytest.fixture(scope="session")
def samples(cnn_dir: Path) -> list[dict[str, np.ndarray]]:
    files = sorted((cnn_dir / "calibration_data" / "input").glob("*.npy"), key=lambda p: int(p.stem))
    return [{"input": np.load(f)} for f in files]
