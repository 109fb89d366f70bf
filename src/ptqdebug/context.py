"""A calibrated model, its calibration data and one engine, shared by every analysis of a run.

``runall`` opens one :class:`Context` and hands it to every step, so the model is read once, the
sessions are built once, and each sample's float reference is computed once.
"""

from __future__ import annotations

import functools
import hashlib
import numbers
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from .cache import ResultCache, sample_digest
from .data import Dataset, load_data, select
from .engine.engine import Engine, Reference
from .errors import DataError, ModelError, OptionError, PtqDebugError
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
        self._batch_refs: dict[tuple[tuple[int, ...], tuple[str, ...]], Reference] = {}
        self._batch_ok: bool | None = None
        # Samples per run when the model's batch dimension allows. On a GPU batching fills the
        # device; on CPU ONNX Runtime already spreads one sample over the cores, and a batch of 8
        # measured no faster while holding 8 samples' activations (2.3 GB against 1.3 GB on ViT-S).
        self.batch_size = 1 if engine.providers[0] == "CPUExecutionProvider" else 8
        self.workers = 1  # processes that score configurations in parallel (see ptqdebug.parallel)
        self.executor = "local"
        self.pool = None  # the helper processes of local workers (ptqdebug.parallel.WorkerPool)
        #: the calibrated model as the user gave it (a file path or a ModelProto; None when only a
        #: CalibratedModel read from memory was given), for running it as ONNX Runtime deploys it
        self.source: str | onnx.ModelProto | None = model.path
        #: the float model the calibrated one was made from, as given (see analyses.floatgap)
        self.float_model: str | os.PathLike[str] | onnx.ModelProto | None = None
        self.cache = ResultCache(lambda: self.model_digest, enabled=cache)
        #: per-sample scores of configurations already run (see :meth:`remember_score`)
        self.scored: OrderedDict[bytes, np.ndarray] = OrderedDict()
        # the files read and the data argument (see watch); none for a context made by hand
        self._data_arg: object = None
        self._paths: list[str] = []
        self._stamps: tuple[tuple[str, ...], tuple[object, ...]] = ((), ())

    #: configurations' scores kept for reuse (a few hundred bytes each)
    MAX_SCORED = 65536

    def __repr__(self) -> str:
        m = self.model
        return (f"Context(model={m.path or 'in memory'!r}, {len(m.weight_quantizers)} weight and "
                f"{len(m.activation_quantizers)} activation calibration nodes, {len(self.data)} samples from "
                f"{self.data.source}, providers={list(self.engine.providers)}, workers={self.workers})")

    def watch(self, model_or_file: object, float_model: object, calibrated_data: object) -> None:
        """Remember the files this context was read from (the model, the float model, every file
        of the data), and the data argument itself, for :meth:`check_unchanged` and
        :meth:`check_same_data`."""
        self._data_arg = calibrated_data
        self._paths = [os.path.abspath(p) for p in (model_or_file, float_model, calibrated_data)
                       if isinstance(p, (str, os.PathLike))]
        self._stamps = self._stamp()

    def _stamp(self) -> tuple[tuple[str, ...], tuple[object, ...]]:
        from .parallel.stamps import file_stamps

        files: list[str] = []
        for p in self._paths:
            files.append(p)
            if os.path.isdir(p):  # the data is read sample by sample, on demand: every file counts
                files += sorted(str(f) for f in Path(p).rglob("*"))
        return tuple(files), file_stamps(files)

    def check_unchanged(self) -> None:
        """Refuse to go on when a file this context was read from changed since: the model is
        held in memory but the data is read on demand, and a deployment check runs the file, so a
        stale context would mix old and new (an :class:`OptionError` naming the file)."""
        if not self._paths:
            return
        (old_files, old), (new_files, new) = self._stamps, self._stamp()
        if (old_files, old) == (new_files, new):
            return
        changed = next((f for f, a, b in zip(old_files, old, new) if a != b), None) if old_files == new_files else None
        what = f"{changed!r} changed" if changed else "the files of the calibration data changed"
        raise OptionError(f"{what} since this context was opened; open a new one (ptqdebug.open_context) to use them")

    @property
    def input_paths(self) -> tuple[str, ...]:
        """The absolute paths of the files and folders this context was read from (the model, the
        float model, the data), for commands that must never write over them."""
        return tuple(self._paths)

    @property
    def data_argument(self) -> object:
        """The ``calibrated_data`` this context was opened with (a path, arrays, ...; None for a
        context made by hand)."""
        return self._data_arg

    def check_same_data(self, calibrated_data: object) -> None:
        """Refuse calibration data other than the context's own next to the context (it would be
        ignored: the context holds its data)."""
        if self._data_arg is None or calibrated_data is None or calibrated_data is self._data_arg or calibrated_data is self.data:
            return  # (a context made by hand: nothing to compare with)
        given = calibrated_data if isinstance(calibrated_data, (str, os.PathLike)) else None
        own = self._data_arg if isinstance(self._data_arg, (str, os.PathLike)) else None
        if given is not None and own is not None and os.path.abspath(given) == os.path.abspath(own):
            return
        raise OptionError("calibrated_data differs from the data this context was opened with, and a context keeps its "
                          "data; pass the same data (or None), or open a new context for other data")

    def remember_score(self, key: bytes, values: np.ndarray) -> None:
        """Keep a configuration's per-sample scores: analyses of this context that score the
        same configuration on the same samples (keyed by :func:`analyses.sensitivity._score_key`)
        reuse them instead of running it again."""
        self.scored[key] = values
        if len(self.scored) > self.MAX_SCORED:
            self.scored.popitem(last=False)

    @functools.cached_property
    def model_digest(self) -> str:
        """SHA-256 of the model as ptqdebug runs it (see :mod:`ptqdebug.cache`).

        Hashed piece by piece (graph without weights, then each weight), so models above
        protobuf's 2 GB serialization limit hash too.
        """
        proto = self.model.proto
        skeleton = onnx.ModelProto()
        skeleton.ir_version = proto.ir_version
        skeleton.opset_import.extend(proto.opset_import)
        skeleton.graph.node.extend(proto.graph.node)
        skeleton.graph.input.extend(proto.graph.input)
        skeleton.graph.output.extend(proto.graph.output)
        h = hashlib.sha256(skeleton.SerializeToString(deterministic=True))
        for t in proto.graph.initializer:
            h.update(t.SerializeToString(deterministic=True))
        for q in self.model.quantizers:  # what a calibration node computes when on
            for node in q.nodes:
                h.update(node.SerializeToString(deterministic=True))
            for t in (*q.initializers, *q.corrections):
                h.update(t.SerializeToString(deterministic=True))
        h.update(",".join(self.engine.providers).encode())
        return h.hexdigest()

    def sample_groups(self, data_num: int | None) -> list[list[int]]:
        """The selected samples, in runs of up to :attr:`batch_size` that go through the model as
        one batch (concatenated along axis 0) when the model allows it, else one by one."""
        n = len(self.samples(data_num))
        size = self.batch_size if n > 1 and self.batch_size > 1 and self._batchable() else 1
        if size == 1:
            return [[i] for i in range(n)]
        groups: list[list[int]] = []
        last: dict[str, tuple[int, ...]] = {}
        for i in range(n):  # only samples of the same size share a run (free H/W may differ)
            rows = {name: shape[1:] for name, shape in self.data.shapes(i).items()}
            if groups and len(groups[-1]) < size and rows == last:
                groups[-1].append(i)
            else:
                groups.append([i])
                last = rows
        return groups

    def score_groups(self, data_num: int | None, compare_at: Sequence[str]) -> list[list[int]]:
        """:meth:`sample_groups` for scoring at ``compare_at``: one by one where a compared tensor
        does not split along axis 0 like the samples do."""
        groups = self.sample_groups(data_num)
        if len(groups[0]) > 1:
            ref = self.reference_group(groups[0], compare_at)
            rows = sum(self.batch_sizes(groups[0]))
            if any(np.ndim(ref[t]) == 0 or np.shape(ref[t])[0] != rows for t in compare_at):
                groups = [[i] for g in groups for i in g]
        return groups

    def reference_group(self, group: Sequence[int], fetch: Sequence[str]) -> Reference:
        """The float run of samples ``group`` as one batch (one sample: :meth:`reference`)."""
        if len(group) == 1:
            return self.reference(group[0], fetch)
        key = (tuple(group), tuple(fetch))
        ref = self._batch_refs.get(key)
        if ref is None:
            samples = [self.data[i] for i in group]
            merged = {name: np.concatenate([s[name] for s in samples]) for name in samples[0]}
            ref = self.engine.reference(merged, fetch)
            self._batch_refs = {key: ref}  # one batch at a time: memory stays bounded
        return ref

    def batch_sizes(self, group: Sequence[int]) -> list[int]:
        """How many rows along axis 0 each sample of ``group`` contributes."""
        first = self.model.inputs[0].name
        return [int(self.data[i][first].shape[0]) for i in group]

    def _batchable(self) -> bool:
        """Whether samples can share a run: a free first dimension on every input, and outputs
        whose first dimension follows it (checked once on two samples against separate runs)."""
        if self._batch_ok is None:
            self._batch_ok = self._check_batching()
        return self._batch_ok

    def _check_batching(self) -> bool:
        fixed_batch = [s for s in self.model.inputs
                       if s.shape is None or not s.shape or (isinstance(s.shape[0], int) and s.shape[0] > 0)]
        if len(self.data) < 2 or fixed_batch:
            return False
        outputs = self.model.outputs
        try:
            a, b = self.engine.reference(self.data[0], outputs), self.engine.reference(self.data[1], outputs)
            both = self.engine.reference({k: np.concatenate([self.data[0][k], self.data[1][k]]) for k in self.data[0]}, outputs)
        except Exception:  # the model rejects a batch: run samples one by one
            return False
        rows = self.batch_sizes([0, 1])
        for t in outputs:
            x = np.asarray(both[t])
            if x.ndim == 0 or x.shape[0] != sum(rows):
                return False
            if not (np.allclose(x[: rows[0]], a[t], rtol=1e-4, atol=1e-5, equal_nan=True)
                    and np.allclose(x[rows[0]:], b[t], rtol=1e-4, atol=1e-5, equal_nan=True)):
                return False
        return True

    def runtime_failure(self, data_num: int | None = None) -> PtqDebugError | None:
        """Why ONNX Runtime cannot run the user's model on the selected samples, if it cannot.

        Called after ONNX Runtime failed inside an analysis, to tell a model or data problem from
        a ptqdebug bug: the float model (every calibration node off) and the calibrated model as
        given (every calibration node on) each run in one plain session over the whole graph,
        sample by sample. If one fails, that is the user's model or data (a :class:`ModelError`
        when the first sample fails, else a :class:`DataError` naming the sample); if both run,
        ptqdebug's own graph surgery failed and the caller re-raises the original error."""
        from .engine.build import build_model
        from .engine.runtime import make_session, ort_reason

        every = [q.name for q in self.model.quantizers]
        variants = (("float model", lambda: self.model.proto),
                    ("calibrated model (every calibration node on)", lambda: build_model(self.model, on=every).model))
        for what, proto in variants:
            try:
                session = make_session(proto(), self.engine.providers, self.engine.threads)
            except ModelError as exc:
                return exc
            outputs = [o.name for o in session.get_outputs()]
            for i in range(len(self.samples(data_num))):
                sample = self.data[i]
                try:
                    session.run(outputs, dict(sample))
                except Exception as exc:  # ONNX Runtime's own exception types share no base class
                    if not type(exc).__module__.startswith("onnxruntime"):
                        raise
                    reason = ort_reason(exc)
                    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in sample.items())
                    where = f"sample {self.data.labels[i]} of {self.data.source} ({shapes})"
                    if i == 0:
                        return ModelError(f"ONNX Runtime cannot run the {what} on {where}: {reason}; expected a model that "
                                          "runs in ONNX Runtime with inputs of these shapes (check it with onnxruntime directly)")
                    return DataError(f"ONNX Runtime cannot run the {what} on {where}, although earlier samples ran: {reason}; "
                                     "expected every sample to have a shape the model accepts")
        return None

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
    workers: int | None = None,
    executor: str | None = None,
) -> Context:
    """Read the model and the data, check one against the other, and make the engine.

    Pass the context instead of ``model_or_file`` to any function (``dbg.runall(ctx, ...)``,
    ``dbg.get_sensitivity_of_nodes(ctx, ...)``, ...) to share what it computes once: the float
    references, the sessions, the scores of configurations already run. Its model, data,
    ``float_model``, ``providers``, ``threads`` and ``cache`` are fixed here; a function given a
    context refuses other data or those options, and refuses to go on when a file the context
    was read from (the model, the float model, the data) has changed since.
    """
    from .parallel import EXECUTORS
    from .parallel.local import check_workers, helpers_for, process_threads
    from .parallel.pool import WorkerPool, attach_pool
    from .parallel.stamps import file_stamps

    if providers is not None and not isinstance(providers, str) and (
            not isinstance(providers, (list, tuple)) or not all(isinstance(p, str) for p in providers)):
        raise OptionError(f"providers is {providers!r}; expected a name such as 'CPUExecutionProvider' or a list of names")
    if not isinstance(cache, (bool, np.bool_)):
        raise OptionError(f"cache is {cache!r}; expected True or False")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0):
        raise OptionError(f"threads is {threads!r}; expected a whole number >= 1 (0 or None: ONNX Runtime's default)")
    if executor is not None and executor not in EXECUTORS:
        raise OptionError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if isinstance(model_or_file, Context):  # the pair in effect: what is given, else the context's
        check_workers(workers or model_or_file.workers, executor or model_or_file.executor)
    else:
        check_workers(workers, executor)
    if isinstance(model_or_file, Context):
        if workers is not None:
            model_or_file.workers = workers
        if executor is not None:
            model_or_file.executor = executor
        return model_or_file
    pool, files = None, None
    if (workers or 1) > 1 and (executor or "local") == "local":
        # helpers start now and read the model themselves while this process does; every
        # process runs the same number of threads, so the helpers' numbers are this process's
        pool = WorkerPool(helpers_for(workers or 1))
        threads = process_threads(threads, workers or 1)
        if isinstance(model_or_file, (str, os.PathLike)) and (float_model is None or isinstance(float_model, (str, os.PathLike))):
            files = [os.path.abspath(f) if f is not None else None for f in (model_or_file, float_model)]
            pool.load(files)
    try:
        before = file_stamps(files) if files else None
        model = load_model(model_or_file, float_model)
        if pool is not None and files:
            pool.loaded(model, before if file_stamps(files) == before else None)
        elif pool is not None:
            pool.send_model(model)
        data = load_data(calibrated_data, model.inputs)
        if len(data) == 0:
            from .errors import DataError

            raise DataError(f"{data.source} holds no samples; expected at least one")
        first = data[0]
        shapes = {name: tuple(arr.shape) for name, arr in first.items()}
        engine = Engine(model, providers=providers, threads=threads, shapes=shapes)
    except BaseException:
        if pool is not None:
            pool.close(kill=True)
        raise
    ctx = Context(model, data, engine, cache=cache)
    ctx.watch(model_or_file, float_model, calibrated_data)
    if isinstance(model_or_file, onnx.ModelProto):
        ctx.source = model_or_file
    ctx.float_model = float_model
    ctx.workers = workers or 1
    ctx.executor = executor or "local"
    if pool is not None:
        attach_pool(ctx, pool)
    return ctx
