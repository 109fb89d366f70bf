"""Fixtures of the calibration tests (the models themselves are in ``models.py``)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from tests.calibration.models import tiny_cnn


@pytest.fixture
def tiny_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(path))
    return path
