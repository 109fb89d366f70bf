"""What a calibration run produced: frozen records with ``to_dict``/``from_dict`` round trips."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["CalibrationResult", "TensorRange"]


def _enc(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _deployment(value: object) -> tuple[int, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return (0, math.nan, math.nan)
    return (int(value[0]), float(value[1]), float(value[2]))


def _dec(x: float | str | None) -> float | None:
    return None if x is None else float(x)  # float("nan"/"inf") parses the encoded strings


@dataclass(frozen=True)
class TensorRange:
    """One activation calibration node as written.

    Attributes:
        node: the calibration node's name (its QuantizeLinear node).
        tensor: the activation tensor it quantizes.
        qtype: ``int8`` or ``int16``.
        scale: the quantization step.
        zero_point: the integer zero point (0 when symmetric).
        lo, hi: the float range the grid covers, ``scale·(qmin - zero_point)`` to
            ``scale·(qmax - zero_point)`` (``±scale·qmax`` when symmetric).
        minimum, maximum: the values observed over the calibration data (None when the node
            shares its parameters with another tensor's node and was not measured itself).
    """

    node: str
    tensor: str
    qtype: str
    scale: float
    zero_point: int
    lo: float
    hi: float
    minimum: float | None = None
    maximum: float | None = None

    @property
    def threshold(self) -> float:
        """The largest magnitude the grid reaches, as the original toolchain reports thresholds."""
        return max(abs(self.lo), abs(self.hi))

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "tensor": self.tensor, "qtype": self.qtype, "scale": self.scale,
            "zero_point": self.zero_point, "lo": self.lo, "hi": self.hi,
            "minimum": _enc(self.minimum), "maximum": _enc(self.maximum),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorRange:
        return cls(
            node=str(d["node"]), tensor=str(d["tensor"]), qtype=str(d["qtype"]), scale=float(d["scale"]),
            zero_point=int(d["zero_point"]), lo=float(d["lo"]), hi=float(d["hi"]),
            minimum=_dec(d.get("minimum")), maximum=_dec(d.get("maximum")),
        )


@dataclass(frozen=True)
class CalibrationResult:
    """The outcome of :func:`ptqdebug.calibrate`.

    Attributes:
        model_path: the calibrated model written (``OUT/calibrated_model.onnx``).
        data_dir: the calibration data written (``OUT/calibration_data``).
        method: the activation calibration method used (the one selected, for ``default``).
        cosine: cosine similarity of the float and calibrated model outputs, averaged over the
            calibration samples (per sample the mean over outputs). NaN if an output became
            non-finite.
        candidates: for ``default``, each tried method → its output cosine on the selection
            samples; otherwise the one method → ``cosine``.
        ranges: every activation calibration node, in graph order.
        num_samples: calibration samples used.
        deployment: ``(k, defined, deployed)``: the output cosine on the first k samples (at most
            16) of the model as ONNX defines it (what ptqdebug analyses, ``cosine`` on those
            samples) and as ONNX Runtime deploys it by default (QDQ fused into integer kernels).
        options: the settings of the run (method, percentile, per_channel, ...).
    """

    model_path: str
    data_dir: str
    method: str
    cosine: float
    candidates: Mapping[str, float] = field(default_factory=dict)
    ranges: tuple[TensorRange, ...] = field(default=(), repr=False)  # (one per calibration node: see range_of)
    num_samples: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    deployment: tuple[int, float, float] = (0, math.nan, math.nan)

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", MappingProxyType(dict(self.candidates)))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "ranges", tuple(self.ranges))

    def range_of(self, name: str) -> TensorRange:
        """The range of a calibration node, looked up by node name or by tensor name (an unknown
        name is an :class:`~ptqdebug.errors.UnknownNodeError` with a suggestion)."""
        for r in self.ranges:
            if name in (r.node, r.tensor):
                return r
        from ..errors import UnknownNodeError

        raise UnknownNodeError([name], "range_of", [n for r in self.ranges for n in (r.node, r.tensor)],
                               "the calibrated tensors are in .ranges")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path, "data_dir": self.data_dir, "method": self.method,
            "cosine": _enc(self.cosine), "candidates": {k: _enc(v) for k, v in self.candidates.items()},
            "ranges": [r.to_dict() for r in self.ranges], "num_samples": self.num_samples,
            "options": dict(self.options), "deployment": [self.deployment[0], *map(_enc, self.deployment[1:])],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationResult:
        return cls(
            model_path=str(d["model_path"]), data_dir=str(d["data_dir"]), method=str(d["method"]),
            cosine=float(d["cosine"]), candidates={k: float(v) for k, v in d.get("candidates", {}).items()},
            ranges=tuple(TensorRange.from_dict(r) for r in d.get("ranges", [])),
            num_samples=int(d.get("num_samples", 0)), options=dict(d.get("options", {})),
            deployment=_deployment(d.get("deployment")),
        )
