"""How far an actual tensor is from its float reference.

Each metric is a small pure function of ``(reference, actual)`` computed in float64 on the
flattened tensors (booleans and integers are converted to float). Names and directions follow the
original tool (reference §3.4); where its formula is surprising, ptqdebug uses the standard
definition:

================== ======================================== ======== =================================
name               formula (a = reference, b = actual)      better   original tool
================== ======================================== ======== =================================
cosine-similarity  a·b / (max(‖a‖,1e-8) · max(‖b‖,1e-8))    higher   same
mse                mean((a - b)²)                           lower    same
mre                Σ|a - b| / Σ|a|  (relative L1 error)     lower    mean(|a - b|): an absolute error
sqnr               10·log10(Σa² / Σ(a - b)²)  in dB         higher   half of it: 10·log10(‖a‖/‖a-b‖)
chebyshev          max|a - b|                               lower    same
================== ======================================== ======== =================================

Special values, defined everywhere:

* identical tensors (including all-zero ones) score the best value: cosine 1, mse/mre/chebyshev
  0, sqnr +inf (a lossless calibration node);
* positions where both tensors hold the same non-finite value (the float model's own inf/NaN) are
  left out;
* if the actual tensor is non-finite where the reference is not (or the reverse), every metric is
  NaN: the comparison is undefined, and rankings put such candidates first and flag them.

**Your own metric** (where cosine similarity does not say what your task loses — a classifier's
top-1 agreement, a detector's box error): wherever a metric name is accepted, give a function
``f(reference, actual) -> float`` instead, or on the command line ``path/to/file.py:function``. It
is called once per compared tensor and sample, with both tensors as float64 arrays in their own
shape (one sample: batch dimension 1), and averaged like the built-in metrics. Higher is better
unless the function has an attribute ``higher_is_better = False``. Results are named after the
function; results computed with a file's function are cached on disk keyed by the file's bytes,
those of a function defined in your process are not cached, and helper processes
(``workers=N``, Ray) need the file form. Example (``my_metrics.py``)::

    import numpy as np

    def top1(reference, actual):
        # 1 when the quantized model's class is the float model's, else 0
        return float(np.argmax(reference) == np.argmax(actual))

``ptqdebug get-sensitivity-of-nodes model.onnx data -m "['my_metrics.py:top1','cosine-similarity']"``
ranks the nodes by how many top-1 answers they change.

A function with a third parameter, ``f(reference, actual, sample)`` (required, or named
``sample``), also gets the index of the sample (0, 1, ... in the order ptqdebug reads the data:
``0.npy``, ``1.npy``, ...), to score against your labels, so that nodes rank by the accuracy they
cost. Such a metric reads something the results cache cannot see (the labels), so its sweeps are
never cached on disk::

    LABELS = np.load("labels.npy")  # one class per calibration sample

    def accuracy(reference, actual, sample):
        return float(np.argmax(actual) == LABELS[sample])

A function with the attribute ``all_outputs = True`` scores **every compared tensor of a sample
at once** — a detector's boxes and scores together, or outputs weighted by importance: it gets two
dicts ``{tensor name: float64 array}`` (the model's outputs, or ``output_node``'s tensors), plus the
sample's index if it asks for it, and its one number is the sample's score (averaged over
samples; the deployment check's per-output rows all show it). Such a metric judges the model's
outputs, so the steps that compare each node's own tensors (cumulative error curves, local
errors) refuse it::

    def weighted(reference, actual):
        return 0.8 * cosine(reference["boxes"], actual["boxes"]) + 0.2 * cosine(reference["scores"], actual["scores"])

    weighted.all_outputs = True

If any compared tensor became NaN/inf where its reference is finite, the sample scores NaN without
calling the function, as with the built-in metrics.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import itertools
import math
import reprlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import OptionError
from .userscript import SCRIPT, file_digest, load_function, user_error

__all__ = ["METRICS", "Metric", "MetricLike", "compare", "compare_sample", "get_metrics", "known_metric", "per_tensor_only", "pick_direction",
           "portable_refs"]

MetricFunction = Callable[[np.ndarray, np.ndarray], float]
#: What an option naming metrics accepts: a built-in name, ``path/to/file.py:function``, or a function.
MetricLike = Union[str, MetricFunction]


@dataclass(frozen=True)
class Metric:
    """A way to score a tensor against its float reference.

    ``best`` is the score of identical tensors (None for a user's metric: its function is called);
    ``ref`` is how another process finds a user's metric (``/abs/path/file.py:function``; empty
    for a built-in, which is found by name); ``fingerprint`` is what its scores depend on besides
    the name, for the disk cache: empty for a built-in, the file's digest, or None for a function
    that lives only in this process (its scores are not cached on disk).
    """

    name: str
    higher_is_better: bool
    best: float | None
    func: MetricFunction
    ref: str = ""
    fingerprint: str | None = ""
    identity: str = ""
    takes_sample: bool = False  # a user's function f(reference, actual, sample): it gets the sample's index
    all_outputs: bool = False  # a user's function of {tensor: array} dicts: every compared tensor of a sample at once

    @property
    def key(self) -> str:
        """What its scores depend on within this process: the name, and for a user's metric its
        file's contents or which function it is."""
        return self.identity or self.name

    def worse(self, x: float, y: float) -> bool:
        """Whether score ``x`` is worse than ``y`` (NaN is worse than anything)."""
        if math.isnan(x):
            return not math.isnan(y)
        if math.isnan(y):
            return False
        return x < y if self.higher_is_better else x > y

    def badness(self, x: float) -> float:
        """A key that sorts worst first: NaN, then the worst values."""
        if math.isnan(x):
            return -math.inf
        return x if self.higher_is_better else -x


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not np.dot: OpenBLAS's threaded dot is ~15x slower next to ONNX Runtime's threads
    return float(np.einsum("i,i->", a, b))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = math.sqrt(_dot(a, a)), math.sqrt(_dot(b, b))
    value = _dot(a, b) / (max(na, 1e-8) * max(nb, 1e-8))
    return min(1.0, max(-1.0, value))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return _dot(d, d) / d.size


def _mre(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.abs(a).sum())
    num = float(np.abs(a - b).sum())
    return num / den if den > 0 else math.inf


def _sqnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    noise = _dot(d, d)
    signal = _dot(a, a)
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _chebyshev(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


METRICS: dict[str, Metric] = {
    "cosine-similarity": Metric("cosine-similarity", True, 1.0, _cosine),
    "mse": Metric("mse", False, 0.0, _mse),
    "mre": Metric("mre", False, 0.0, _mre),
    "sqnr": Metric("sqnr", True, math.inf, _sqnr),
    "chebyshev": Metric("chebyshev", False, 0.0, _chebyshev),
}


#: The user's metrics met in this process, by name (a function's or a file's), so that a result's
#: metric names can be looked up again (the report, the command line's table).
_USER: dict[str, Metric] = {}
#: Metrics loaded from files, by ``/abs/path/file.py:function``: loaded again when the file changes.
_FILES: dict[str, Metric] = {}
#: Metrics made from functions of this process, by the function's id (with the function, which
#: keeps the id from being reused; callables need not be hashable).
_FUNCTIONS: dict[int, tuple[object, Metric]] = {}
_SERIAL = itertools.count()
_KNOWN = ", ".join(METRICS)


def get_metrics(names: MetricLike | Sequence[MetricLike]) -> tuple[Metric, ...]:
    """Metric objects for built-in names (case-insensitive), ``file.py:function`` specs and
    functions (see the module doc); anything else is an :class:`OptionError`."""
    if isinstance(names, str) or callable(names):
        names = [names]
    names = list(names)
    if not names:
        raise OptionError(f"no metric given; expected one or more of {_KNOWN}")
    out = tuple(dict.fromkeys(_metric(name) for name in names))
    for i, m in enumerate(out):
        other = next((o for o in out[:i] if o.name == m.name), None)
        if other is not None:  # results are keyed by name
            raise OptionError(f"two different metrics are named {m.name!r}; give your metric functions different names")
    return out


def known_metric(name: str) -> Metric | None:
    """The built-in metric or the user's metric met in this process with that name, else None
    (nothing is loaded): for describing results, such as the report's "higher is better"."""
    return METRICS.get(name) or _USER.get(name)


def pick_direction(metric: str) -> tuple[str, str]:
    """How ``pick_threshold`` picks nodes by ``metric``: ``("at or below", "raise")`` when higher
    is better (cosine similarity), ``("at or above", "lower")`` when lower is (mse): where a
    picked node scores, and which way to move the threshold to pick more."""
    m = known_metric(metric)
    return ("at or below", "raise") if m is None or m.higher_is_better else ("at or above", "lower")


def _metric(item: object) -> Metric:
    if callable(item):
        known = _FUNCTIONS.get(id(item))
        if known is None or known[0] is not item:
            known = _FUNCTIONS[id(item)] = (item, _user_metric(item, getattr(item, "__name__", type(item).__name__), "", None))
        return _remember(known[1])
    if not isinstance(item, str):
        raise OptionError(f"metric {item!r} is a {type(item).__name__}; expected a metric name ({_KNOWN}), "
                          "file.py:function or a function")
    key = item.strip()
    if key.lower() in METRICS:
        return METRICS[key.lower()]
    if key in _USER:
        return _USER[key]
    key, _, expected = key.partition("#")  # a helper process's reference carries the file's digest
    spec = SCRIPT.match(key)
    if spec is None:
        close = difflib.get_close_matches(key.lower(), [*METRICS, *_USER], n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        if key.endswith(".py"):
            hint = f"name the function too: '{key}:FUNCTION'; "
        raise OptionError(f"unknown metric {item!r}; {hint}expected one of {_KNOWN}, or your own as file.py:function")
    path = Path(spec["path"]).resolve()
    ref, func = f"{path}:{spec['func']}", spec["func"]
    digest = file_digest(path) if path.is_file() else None
    if expected and digest != expected:
        raise OptionError(f"metric file {str(path)!r} changed while ptqdebug was using it; run again")
    fingerprint = f"{digest}:{func}" if digest else None
    known_file = _FILES.get(ref)
    if known_file is not None and known_file.fingerprint == fingerprint:
        return _remember(known_file)
    fn = load_function(path, func, "metric file", OptionError, f"def {func}(reference, actual): return a float")
    made = _FILES[ref] = _user_metric(fn, func, ref, fingerprint, path)
    return _remember(made)


def _user_metric(fn: Callable[..., object], name: str, ref: str, fingerprint: str | None,
                 script: Path | None = None) -> Metric:
    """A user's function as a :class:`Metric` whose errors are one-line :class:`OptionError` s."""
    if name.lower() in METRICS:
        raise OptionError(f"your metric function is named {name!r} like a built-in metric; rename it")
    where = script or Path(getattr(getattr(fn, "__code__", None), "co_filename", "<unknown>"))
    takes_sample = _takes_sample(fn)

    def call(reference: np.ndarray, actual: np.ndarray, sample: int | None = None) -> float:
        try:
            with _one_blas_thread():
                value = fn(reference, actual, sample) if takes_sample else fn(reference, actual)
        except Exception as exc:  # the user's code
            fix = "fix the metric function"
            if isinstance(exc, KeyError) and isinstance(reference, dict):  # all_outputs: which names there are
                fix += f" (its dicts hold {', '.join(map(repr, reference))})"
            raise user_error(exc, where, f"metric {name}", OptionError, fix) from None
        try:
            if isinstance(value, (str, bytes)):  # float("1.0") would take it
                raise TypeError
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            shown = (f"an array of shape {list(np.shape(value))}" if isinstance(value, np.ndarray)
                     else reprlib.repr(value))
            raise OptionError(f"metric {name} returned {shown}; expected a number") from None

    identity = f"{name}@{fingerprint if fingerprint is not None else f'function {next(_SERIAL)}'}"
    return Metric(name, bool(getattr(fn, "higher_is_better", True)), None, call, ref, fingerprint, identity, takes_sample,
                  bool(getattr(fn, "all_outputs", False)))


_BLAS: dict[str, Any] = {"controller": None, "limiter": None, "depth": 0}  # see _one_blas_thread
_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while a user's metric runs: its threads otherwise stay spinning
    beside ONNX Runtime's (``np.dot`` over a detector's outputs doubled a sweep's time, and cost
    a fifth on a CNN's feature map). Limited by the first of overlapping calls (metrics run in
    threads) and given back by the last, so the user's own setting always comes back."""
    with _BLAS_LOCK:
        if _BLAS["depth"] == 0:
            if _BLAS["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _BLAS["controller"] = ThreadpoolController()
            _BLAS["limiter"] = _BLAS["controller"].limit(limits=1, user_api="blas")
        _BLAS["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["depth"] -= 1
            if _BLAS["depth"] == 0:
                _BLAS["limiter"].restore_original_limits()


def _takes_sample(fn: Callable[..., object]) -> bool:
    """Whether a user's metric asks for the sample's index: a third positional parameter without a
    default, or one named ``sample`` (``f(reference, actual, eps=1e-12)`` and ``f(*args)`` do not)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the two-argument form
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) >= 3 or any(p.name == "sample" for p in positional[2:])


def _remember(metric: Metric) -> Metric:
    _USER[metric.name] = metric  # the latest function of that name
    return metric


def portable_refs(metrics: Sequence[Metric]) -> tuple[str, ...]:
    """How a helper process finds ``metrics`` (:func:`get_metrics` reads these); a function that
    lives only in this process cannot be sent: an :class:`OptionError` says what to do instead."""
    local = [m.name for m in metrics if m.fingerprint is None]
    if local:
        raise OptionError(f"metric {local[0]!r} is a function of this process, which helper processes (workers, Ray) "
                          "cannot load; put it in a file and pass 'file.py:function', or use workers=1")
    # a file's metric with the digest of the file it was loaded from: a helper that finds the
    # file edited since refuses it (the results would be cached under the old code's key)
    return tuple(f"{m.ref}#{(m.fingerprint or '').split(':')[0]}" if m.ref else m.name for m in metrics)


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(-1).astype(np.float64, copy=False)


def compare(metrics: Sequence[Metric], reference: np.ndarray, actual: np.ndarray, sample: int | None = None
            ) -> tuple[float, ...]:
    """Every metric of ``actual`` against ``reference``, with the special values described above;
    ``sample`` is the index of the sample they come from (for a user's metric that asks for it)."""
    a, b = _flat(reference), _flat(actual)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {np.shape(reference)}, actual {np.shape(actual)}")
    pair = _comparable(a, b)
    if pair is None:
        return tuple(math.nan for _ in metrics)
    a, b = pair
    identical = a.size == 0 or np.array_equal(a, b)
    return tuple(
        (m.best if identical else m.func(a, b)) if m.best is not None
        else _call_user(m, np.asarray(reference, np.float64), np.asarray(actual, np.float64), sample)
        for m in metrics)


def compare_sample(metrics: Sequence[Metric], names: Sequence[str], reference: Mapping[str, np.ndarray],
                   actual: Mapping[str, np.ndarray], sample: int | None = None, rows: slice | None = None) -> np.ndarray:
    """``values[t, m]``: every metric at each compared tensor ``names[t]`` of one sample (its
    ``rows`` of a batch, if given). A metric over all outputs (``all_outputs``) is computed once
    from every tensor and repeated along ``t``: averaged over the tensors, it gives itself back."""
    def cut(x: np.ndarray) -> np.ndarray:
        return x if rows is None else x[rows]

    values = np.full((len(names), len(metrics)), np.nan)
    per_tensor = [i for i, m in enumerate(metrics) if not m.all_outputs]
    if per_tensor:
        chosen = [metrics[i] for i in per_tensor]
        for t, name in enumerate(names):
            values[t, per_tensor] = compare(chosen, cut(reference[name]), cut(actual[name]), sample)
    whole = [i for i, m in enumerate(metrics) if m.all_outputs]
    if whole:
        refs = {n: np.asarray(cut(reference[n]), np.float64) for n in names}
        acts = {n: np.asarray(cut(actual[n]), np.float64) for n in names}
        for n in names:
            if refs[n].shape != acts[n].shape:
                raise ValueError(f"shapes differ at {n}: reference {refs[n].shape}, actual {acts[n].shape}")
        if all(_comparable(refs[n].reshape(-1), acts[n].reshape(-1)) is not None for n in names):
            for i in whole:
                values[:, i] = _call_user(metrics[i], refs, acts, sample)  # type: ignore[arg-type]
    return values


def _comparable(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``a`` and ``b`` (flat) without the positions where both hold the same non-finite value;
    None where comparing them is undefined: non-finite where the other is not (see the module doc)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if fa.all() and fb.all():
        return a, b
    same = ~fa & ~fb & ((a == b) | (np.isnan(a) & np.isnan(b)))
    if np.any((~fa | ~fb) & ~same):
        return None
    return a[~same], b[~same]


def per_tensor_only(metrics: Sequence[Metric], step: str) -> None:
    """Refuse a metric over all outputs in a ``step`` that compares each node's own tensors."""
    whole = [m.name for m in metrics if m.all_outputs]
    if whole:
        raise OptionError(f"metric {whole[0]} scores the compared outputs together (all_outputs), but {step} compare each "
                          "node's own tensors; use a metric of one tensor here (a built-in one, or a function without "
                          "all_outputs)")


def _call_user(metric: Metric, reference: np.ndarray, actual: np.ndarray, sample: int | None) -> float:
    if not metric.takes_sample:
        return metric.func(reference, actual)
    if sample is None:  # every step that scores with a user's metric knows its samples
        raise OptionError(f"metric {metric.name} asks for the sample's index, which this step does not have; "
                          "use a metric f(reference, actual) here")
    return metric.func(reference, actual, sample)  # type: ignore[call-arg]
