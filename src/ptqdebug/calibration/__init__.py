"""Calibration: make a calibrated (QDQ) model and its calibration data from a float model.

``ptqdebug.calibrate(float_model, inputs, out_dir, ...)`` (and ``ptqdebug calibrate``) writes
``OUT/calibrated_model.onnx``, a standard QDQ model in which every calibration node can be switched
off exactly, and ``OUT/calibration_data/<input name>/<i>.npy``, the preprocessed arrays as fed to
the model. See ``docs/calibration.md`` for the methods and their exact definitions.

Modules: :mod:`.inputs` (images, arrays, loader scripts), :mod:`.preprocess` (image
preprocessing), :mod:`.stats` (streaming statistics), :mod:`.methods` (thresholds, scales),
:mod:`.writer` (the float model prepared, the QDQ model written), :mod:`.config` (YAML),
:mod:`.cli` (the ``calibrate`` command).
"""

from __future__ import annotations

from .core import DEFAULT_CANDIDATES, METHODS, calibrate
from .preprocess import ImagePreprocess
from .result import CalibrationResult, TensorRange

__all__ = ["DEFAULT_CANDIDATES", "METHODS", "CalibrationResult", "ImagePreprocess", "TensorRange", "calibrate"]
