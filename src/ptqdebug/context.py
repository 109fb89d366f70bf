"""A calibrated model, its calibration data and one engine, shared by every analysis of a run.

``runall`` opens one :class:`Context` and hands it to every step, so the model is read once, the
sessions are built once, and each sample's float reference is computed once.
"""

from __future__ import annotations

import os
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import onnx

from .cache import ResultCache, sample_digest
from .data import Dataset, load_data, select
from .engine.engine import Engine, Reference
from .model import CalibratedModel, load_model

__all__ = ["Context", "open_context"]


class Context:
    """Model + data + engine, with a small cache of float references."""

    def __init__(self, model: CalibratedModel, data: Dataset, engine: Engine, cache: bool = True) -> None:
        self.model = model
        self.data = data
        self.engine = engine
        self._refs: OrderedDict[tuple[int, tuple[str, ...]], Reference] = OrderedDict()
        self._digests: dict[int, str] = {}
        self.cache = ResultCache(lambda: self.model_digest, enabled=cache)

    @functools.cached_property
    def model_digest(self) -> str:
        """SHA-256 of the model as ptqdebug runs it (see :mod:`ptqdebug.cache`)."""
        h = hashlib.sha256(self.model.proto.SerializeToString(deterministic=True))
        for q in self.model.quantizers:  # what a calibration node computes when on
            for node in q.nodes:
                h.update(node.SerializeToString(deterministic=True))
            for t in q.initializers:
                h.update(t.SerializeToString(deterministic=True))
        h.update(",".join(self.engine.providers).encode())
        return h.hexdigest()

    def sample_digests(self, data_num: int | None) -> list[str]:
        """Digests of the samples ``data_num`` selects (each computed once)."""
        out = []
        for i in range(len(self.samples(data_num))):
            if i not in self._digests:
                self._digests[i] = sample_digest(self.data[i])
            out.append(self._digests[i])
        return out

    def samples(self, data_num: int | None) -> Dataset:
        """The first ``data_num`` samples (checked), all when None."""
        return select(self.data, data_num)

    def reference(self, index: int, fetch: Sequence[str]) -> Reference:
        """The float run of sample ``index`` with ``fetch`` kept (cached, a few at a time)."""
        key = (index, tuple(fetch))
        ref = self._refs.get(key)
        if ref is None:
            ref = self.engine.reference(self.data[index], fetch)
            self._refs[key] = ref
            while len(self._refs) > 4:
                self._refs.popitem(last=False)
        else:
            self._refs.move_to_end(key)
        return ref


def open_context(
    model_or_file: str | os.PathLike[str] | onnx.ModelProto | CalibratedModel | Context,
    calibrated_data: object,
    *,
    float_model: str | os.PathLike[str] | onnx.ModelProto | None = None,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    cache: bool = True,
) -> Context:
    """Read the model and the data, check one against the other, and make the engine."""
    if isinstance(model_or_file, Context):
        return model_or_file
    model = load_model(model_or_file, float_model)
    data = load_data(calibrated_data, model.inputs)
    if len(data) == 0:
        from .errors import DataError

        raise DataError(f"{data.source} holds no samples; expected at least one")
    first = data[0]
    shapes = {name: tuple(arr.shape) for name, arr in first.items()}
    engine = Engine(model, providers=providers, threads=threads, shapes=shapes)
    return Context(model, data, engine, cache=cache)
