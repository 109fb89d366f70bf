"""``calibrate``: a float model and calibration inputs in, a QDQ calibrated model and its data out.

The steps, each in its own module:

1. :mod:`.writer` prepares the float model (names, opset, ORT pre-processing) in a temp folder;
2. :mod:`.inputs` streams the inputs (images through :mod:`.preprocess`) into
   ``OUT/calibration_data``, which then feeds everything else;
3. :mod:`.stats` runs the prepared float model one sample at a time and keeps running
   statistics of every activation it will quantize (two passes: ranges, then ``|x|`` histograms);
4. :mod:`.methods` turns statistics into ranges, and ranges into scales and zero points;
5. :mod:`.writer` has ONNX Runtime insert the Q/DQ pairs with those parameters; for ``default``
   one model per candidate method, and the one whose outputs are closest to the float model's on
   the first samples is kept ("Select kl method.", like the original toolchain);
6. the float and calibrated outputs are compared on every sample (cosine similarity).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..bodies import bodies_of
from ..data import Dataset, check_data_num, load_data
from ..engine.runtime import (
    SessionError,
    deployed_session,
    make_session,
    resolve_providers,
)
from ..errors import ModelError, OptionError, UnknownNodeError
from ..metrics import METRICS, compare
from ..report.files import check_dir, owned_prefix, remove_abandoned, staging_folder, write_atomic
from .inputs import (
    check_replaceable,
    open_source,
    replace_folder,
    write_calibration_data,
)
from .methods import (
    KL_BINS,
    QRANGES,
    kl_threshold,
    percentile_threshold,
    quant_params,
    rebin,
)
from .preprocess import ImagePreprocess
from .result import CalibrationResult, TensorRange
from .stats import Statistics, TensorStats
from .writer import (
    PreparedModel,
    prepare_model,
    read_activation_quantizers,
    stats_model,
    write_qdq,
)

__all__ = ["DEFAULT_CANDIDATES", "METHODS", "SELECT_SAMPLES", "calibrate"]

logger = logging.getLogger("ptqdebug.calibration")

METHODS = ("default", "max", "percentile", "kl", "min-max")
_ALIASES = {"max-percentile": "percentile", "entropy": "kl", "minmax": "min-max", "min_max": "min-max"}
#: The methods ``default`` tries, in order (ties keep the earlier one).
DEFAULT_CANDIDATES = ("max", "percentile", "kl")
#: Below this float-vs-calibrated output cosine similarity, ``calibrate`` warns that the model loses
#: much of its output (a collapsed KL range on an OCR model gave 0.27, with no word read right)
LOW_COSINE = 0.9

#: How many of the first samples ``default`` compares the candidates on (4 chose a method that
#: scored 0.90 on them and 0.87 on all 24 samples of a real classifier, where another scored 0.96)
SELECT_SAMPLES = 8
#: samples the calibrated model is also run on as ONNX Runtime deploys it (one more forward pass
#: each: on all samples it cost 17% more on YOLOv8n with 24 samples and the max method)
DEPLOYED_SAMPLES = 16

Progress = Callable[[int, int], None]
Params = dict[str, tuple[str, float, int]]


def check_method(method: str) -> str:
    """The canonical method name; an :class:`OptionError` with a suggestion otherwise."""
    key = str(method).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        hint = difflib.get_close_matches(key, [*METHODS, *_ALIASES], n=1)
        raise OptionError(
            f"calibration method {method!r} is not supported; expected one of {', '.join(METHODS)}"
            + (f" (did you mean {_ALIASES.get(hint[0], hint[0])!r}?)" if hint else "")
        )
    return key


def _check_options(percentile: object, data_num: object) -> int | None:
    """Check ``percentile``; return ``data_num`` as a count (None: every sample)."""
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0.0 < float(percentile) <= 1.0:
        raise OptionError(f"percentile is {percentile!r}; expected a fraction in (0, 1], e.g. 0.99995")
    return check_data_num(data_num)


def _qnames(prepared: PreparedModel) -> dict[str, str]:
    """The calibration node names the written model can have (ONNX Runtime's
    ``<tensor>_QuantizeLinear``) → their tensors."""
    return {f"{t}_QuantizeLinear": t for t in prepared.tensors}


def _int16_tensors(prepared: PreparedModel, names: Iterable[str] | None) -> set[str]:
    """The tensors int16_nodes names stand for (see :func:`calibrate`)."""
    if names is None:
        return set()
    if isinstance(names, str):
        names = [names]
    qnames = _qnames(prepared)
    tensors = set(prepared.tensors)
    out: set[str] = set()
    unknown = []
    for name in names:
        name = str(name)
        if name in qnames:
            out.add(qnames[name])
        elif name in prepared.node_inputs:
            found = prepared.node_inputs[name]
            if not found:
                raise OptionError(f"int16 node {name!r} has no quantized activation input; name a node that reads an activation, or a tensor")
            out.update(found)
        elif name in tensors:
            out.add(name)
        else:
            unknown.append(name)
    if unknown:
        raise UnknownNodeError(unknown, "int16_nodes", [*prepared.node_inputs, *qnames, *prepared.tensors])
    return out


def _float_nodes(prepared: PreparedModel, names: Sequence[str] | str | None, int16: set[str]) -> list[str]:
    """The names to keep float, checked against the prepared model (see :func:`calibrate`): its
    ordinary nodes, and the calibration nodes the written model can have (``<tensor>_QuantizeLinear``);
    none may switch off a tensor that ``int16`` (the tensors int16_nodes names) widens."""
    if names is None:
        return []
    names = [str(n) for n in ([names] if isinstance(names, str) else names)]
    qnames = _qnames(prepared)
    known = [*(n.name for n in prepared.proto.graph.node), *qnames]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownNodeError(unknown, "float_nodes", known, "calibrate without --float-nodes, then list the calibrated "
                               "model's names with `ptqdebug info`: calibrate takes those")
    for name in names:
        both = sorted(({qnames[name]} if name in qnames else set(prepared.node_inputs.get(name, ()))) & int16)
        if both:
            raise OptionError(f"{name!r} in float_nodes switches off the calibration node of {both[0]!r}, which int16_nodes "
                              "widens to int16; expected each node and tensor in at most one of them")
    return list(dict.fromkeys(names))


#: Values at least this large are fill values, not data: an attention mask's ``-3.4e38`` (float32's
#: lowest), ``-1e9``. An 8-bit scale that reaches them rounds every other value of the tensor to 0,
#: and a scale of ``3.4e38 / 127`` even overflows to ``-inf`` (and ``0 · -inf`` to NaN downstream).
FILL_VALUE = 1e8


def _fill_tensors(prepared: PreparedModel, stats: Statistics) -> dict[str, float]:
    """The activations and float initializers holding values beyond :data:`FILL_VALUE`, with the
    value of largest magnitude: calibrate keeps them in float."""
    out = {st.name: (st.minimum if abs(st.minimum) >= abs(st.maximum) else st.maximum)
           for st in stats.tensors.values() if st.count and st.absmax >= FILL_VALUE}
    for init in prepared.proto.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE) and init.name not in out:
            values = numpy_helper.to_array(init)
            if values.size and np.isfinite(values).all() and float(np.abs(values).max()) >= FILL_VALUE:
                out[init.name] = float(values.reshape(-1)[np.argmax(np.abs(values))])
    return out


def _range(st: TensorStats, method: str, percentile: float, symmetric: bool, qtype: str,
           memo: dict[tuple[str, str, int], float]) -> tuple[float, float]:
    """The clipping range of one tensor under ``method`` (definitions in :mod:`.methods`)."""
    if st.count == 0:
        return 0.0, 0.0
    if method == "min-max":
        return st.minimum, st.maximum
    upper = st.absmax
    if method == "max" or upper == 0.0:
        t = upper
    elif method == "percentile":
        assert st.histogram is not None
        t = percentile_threshold(st.histogram, upper, percentile)
    elif qtype == "int16":  # kl: 32768 levels would need far more bins than the data fills; no clipping pays at 16 bits
        t = upper
    else:
        assert st.histogram is not None
        levels = 256 if (not symmetric and st.one_sided) else 128
        key = (st.name, method, levels)
        if key not in memo:
            memo[key] = kl_threshold(rebin(st.histogram, KL_BINS), upper, levels)
        t = memo[key]
    if symmetric:
        return -t, t
    return max(st.minimum, -t), min(st.maximum, t)


def activation_params(prepared: PreparedModel, stats: Statistics, method: str, percentile: float,
                      symmetric: bool, int16: set[str], memo: dict[tuple[str, str, int], float] | None = None) -> Params:
    """Tensor → (qtype, scale, zero point) for every activation, under one method."""
    memo = {} if memo is None else memo
    sym = symmetric and method != "min-max"
    params: Params = {}
    for t in prepared.tensors:
        qtype = "int16" if t in int16 else "int8"
        st = stats[prepared.relu_inputs.get(t, t)]
        lo, hi = _range(st, method, percentile, sym, qtype, memo)
        scale, zero = quant_params(lo, hi, qtype, sym)
        params[t] = (qtype, float(scale), int(zero))
    return params


def _final_scores(proto: onnx.ModelProto, data: Dataset, count: int, deployed: int, providers: list[str],
                  tick: Callable[[], None]) -> tuple[float, float, float]:
    """The written model's output cosine against float on ``count`` samples as ptqdebug's engine
    computes it (so ``runall --data_num all`` on the result reports the same number), and on the
    first ``deployed`` samples as defined and as ONNX Runtime deploys it (NaN where it cannot)."""
    from ..analyses.lost import ChannelScan
    from ..context import open_context

    ctx = open_context(proto, data.head(count), providers=providers, cache=False)
    on, outputs = ctx.model.calibrated_configuration, list(ctx.model.outputs)
    scan = ChannelScan(ctx.model)  # output channels rounded away: what the output cosine can hide
    fetch = list(dict.fromkeys([*outputs, *scan.fetch]))
    shipped = None
    if deployed:
        try:
            shipped = deployed_session(proto.SerializeToString(), providers, None)
        except SessionError as exc:
            logger.warning("ONNX Runtime cannot load the calibrated model as deployed: %s", exc.reason)
    defined: list[float] = []
    as_deployed: list[float] = []
    for i in range(count):
        ref = ctx.reference(i, fetch)
        scan.add(ref)
        floats, simulated = [ref[t] for t in outputs], ctx.engine.run(ref, on, outputs)  # one run for every output
        defined.append(_output_cosine(floats, [simulated[t] for t in outputs]))
        if shipped is not None and i < deployed:
            as_deployed.append(_output_cosine(floats, shipped.run(outputs, dict(data[i]))))
        tick()
    for x in scan.found():
        logger.warning("%s: if they carry information (class scores beside box coordinates), keep it in float "
                       "(--float-nodes %s) or in int16 (--int16-nodes %s)", x.describe(), x.quantizer, x.quantizer)
    return _mean(defined), _mean(defined[:len(as_deployed)]), _mean(as_deployed)


class _Runner:
    """The float model and, per candidate, a calibrated model: output cosine per sample, to choose
    among the candidates of ``method="default"``."""

    def __init__(self, prepared: PreparedModel, providers: list[str]) -> None:
        self.providers = providers
        self.float_session = make_session(prepared.proto, providers, None)
        self.outputs = list(prepared.outputs)
        self._float: dict[int, list[np.ndarray]] = {}  # float outputs by sample, shared by the candidates

    def cosine(self, calibrated: onnx.ModelProto, data: Dataset, count: int, tick: Callable[[], None]) -> float:
        """Output cosine of ``calibrated`` (as ONNX defines it) against float, mean over the first
        ``count`` samples of the per-sample mean over outputs."""
        session = make_session(calibrated, self.providers, None)
        values = []
        for i in range(count):
            sample = data[i]
            if i not in self._float:
                self._float[i] = self.float_session.run(self.outputs, sample)
            values.append(_output_cosine(self._float[i], session.run(self.outputs, sample)))
            tick()
        return _mean(values)


def _output_cosine(reference: list[np.ndarray], actual: list[np.ndarray]) -> float:
    """Cosine similarity per output, averaged over the floating-point outputs (all where none is:
    :attr:`CalibratedModel.integer_outputs`' rule)."""
    cos = METRICS["cosine-similarity"]
    pairs = [(r, a) for r, a in zip(reference, actual) if np.asarray(r).dtype.kind == "f"] or list(zip(reference, actual))
    return float(np.mean([compare([cos], r, a)[0] for r, a in pairs]))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _ranges(proto: onnx.ModelProto, prepared: PreparedModel, stats: Statistics) -> tuple[TensorRange, ...]:
    out = []
    for q in read_activation_quantizers(proto, prepared.tensors):
        qmin, qmax = QRANGES.get(q.qtype, (-128, 127))
        if q.zero_point == 0 and qmin < 0:
            lo, hi = -q.scale * qmax, q.scale * qmax
        else:
            lo, hi = q.scale * (qmin - q.zero_point), q.scale * (qmax - q.zero_point)
        st = stats.tensors.get(q.tensor)
        seen = st if st is not None and st.count > 0 else None
        out.append(TensorRange(q.name, q.tensor, q.qtype, q.scale, q.zero_point, float(np.float32(lo)), float(np.float32(hi)),
                               seen.minimum if seen is not None else None, seen.maximum if seen is not None else None))
    return tuple(out)


def calibrate(
    float_model: str | os.PathLike[str] | onnx.ModelProto,
    inputs: object,
    out_dir: str | os.PathLike[str],
    *,
    method: str = "default",
    percentile: float = 0.99995,
    per_channel: bool = True,
    activation_symmetric: bool = True,
    int16_nodes: Sequence[str] | None = None,
    all_int16: bool = False,
    float_nodes: Sequence[str] | None = None,
    preprocess: ImagePreprocess | Mapping[str, object] | None = None,
    data_num: int | None = None,
    optimize: bool = True,
    providers: str | Sequence[str] | None = None,
    model_name: str = "calibrated_model.onnx",
    progress: Progress | None = None,
) -> CalibrationResult:
    """Calibrate a float ONNX model: write ``OUT/calibrated_model.onnx`` and ``OUT/calibration_data``.

    Args:
        float_model: the float model (path or ``onnx.ModelProto``).
        inputs: a folder of images, ``.npy``/``.npz`` data, a ``calibration_data`` folder, a loader
            script ``file.py:function``, an array or an iterable of sample dicts
            (:mod:`ptqdebug.calibration.inputs`).
        out_dir: the output folder (created if needed).
        method: activation calibration: ``max``, ``percentile``, ``kl``, ``min-max`` or ``default``
            (tries max, percentile and kl; keeps the one whose outputs are closest to float).
        percentile: the fraction of ``|x|`` values kept by ``percentile`` (also ``default``'s).
        per_channel: weights per output channel (True) or per tensor (False); symmetric max.
        activation_symmetric: ``[-T, T]`` ranges with zero point 0 (True), or asymmetric ranges.
            ``min-max`` is always asymmetric.
        int16_nodes: names whose activations get int16: a calibration node name
            (``<tensor>_QuantizeLinear``, as in a sensitivity ranking), an ordinary node name (all
            its activation inputs, as the original's ``InputType: int16``) or a tensor name.
        all_int16: every activation int16.
        float_nodes: ordinary nodes to keep in float, e.g. the nodes ``runall`` recommends keeping
            in higher precision (the original's ``run_on_cpu``): their calibration nodes, as ptqdebug
            finds them, are switched off in the written model, which is then the configuration partial
            quantization scored (:func:`ptqdebug.engine.build.standalone_model`). A calibration node
            name (``<tensor>_QuantizeLinear``, e.g. a model output's, which no node owns) switches
            off that one.
        preprocess: image preprocessing (:class:`ImagePreprocess` or a dict of its fields).
        data_num: use only the first ``data_num`` samples (None: all).
        optimize: run ONNX Runtime's ``quant_pre_process`` (BatchNorm folding etc.) first.
        providers: ONNX Runtime execution providers for the calibration runs (default CPU).
        model_name: the file name of the calibrated model in ``out_dir``.
        progress: ``progress(done, total)`` called as samples are processed.

    Returns:
        A :class:`CalibrationResult` (paths, method, output cosine, per-node ranges).

    Raises:
        ModelError, DataError, OptionError: with a one-line message saying what to fix.
    """
    method = check_method(method)
    data_num = _check_options(percentile, data_num)
    percentile = float(percentile)
    pre = ImagePreprocess.from_options(preprocess)
    provider_list = resolve_providers(providers)
    if isinstance(out_dir, bytes) or not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir).strip():
        raise OptionError(f"out_dir is {out_dir!r}; expected the folder to write the calibrated model in, e.g. 'calibrated'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"output folder {str(out)!r} is a file; expected a folder (it is created if missing)")
    check_dir(out, "output folder")
    _check_outside_inputs(out, inputs)
    if not model_name or Path(model_name).name != model_name:
        raise OptionError(f"model_name {model_name!r} must be a plain file name such as calibrated_model.onnx")
    int16_wanted = all_int16 or bool(int16_nodes)

    remove_abandoned("ptqdebug-calibrate-", tempfile.gettempdir())  # (what a killed run left there)
    with tempfile.TemporaryDirectory(prefix=owned_prefix("ptqdebug-calibrate-")) as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        prepared = prepare_model(float_model, work, per_channel=per_channel, int16=int16_wanted, optimize=optimize)
        named16 = _int16_tensors(prepared, int16_nodes)
        int16 = set(prepared.tensors) if all_int16 else named16
        keep_float = _float_nodes(prepared, float_nodes, named16)
        data_dir = out / "calibration_data"
        source = open_source(inputs, prepared.inputs, pre, destination=data_dir)
        if pre != ImagePreprocess() and not source.images:
            logger.warning("the preprocessing options apply to images; %s holds tensors already, used as they are",
                           source.description)
        if source.folder is None:
            check_replaceable(data_dir, {s.name for s in prepared.inputs})
        # everything is written into a staging folder first and moved into place at the very end:
        # a failure or Ctrl-C leaves the output folder as it was
        missing = [f for f in (out.absolute(), *out.absolute().parents) if not f.exists()]
        out.mkdir(parents=True, exist_ok=True)
        stack.callback(_remove_if_empty, missing)  # a failure leaves no empty folder behind
        if source.folder is None:
            folder = staging_folder(".calibration_data-", out)
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            write_calibration_data(source, folder, prepared.inputs, data_num)
        else:  # OUT/calibration_data of an earlier run is the input: read in place, never rewritten
            folder = source.folder
        data = load_data(folder, prepared.inputs)
        if data_num is not None and data_num > len(data):  # refused, as everywhere
            raise OptionError(f"there are only {len(data)} samples in {source.description}, but data_num is {data_num}; "
                              f"use at most {len(data)}")
        data = data.head(data_num)
        n = len(data)
        logger.info("There are %d samples in the data set.", n)

        need_hist = method in ("default", "percentile", "kl")
        candidates = DEFAULT_CANDIDATES if method == "default" else (method,)
        select_n = min(n, SELECT_SAMPLES) if len(candidates) > 1 else 0
        total = n * (2 if need_hist else 1) + select_n * len(candidates) + n
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        stats = Statistics(prepared.tensors)
        session = make_session(stats_model(prepared), provider_list, None)
        fetch = list(prepared.tensors)
        passes = [stats.observe_range] + ([stats.observe_histogram] if need_hist else [])
        for observe in passes:
            for i in range(n):
                values = session.run(fetch, data[i])
                observe(dict(zip(fetch, values)))
                tick()
        del session
        bad = [st.name for st in stats.tensors.values() if st.nonfinite]
        if bad:
            logger.warning("%d activations hold inf/NaN values (e.g. %r); they are left out of their ranges", len(bad), bad[0])
        fill = _fill_tensors(prepared, stats)
        if fill:
            name, value = next(iter(fill.items()))
            logger.warning("%d tensors hold values near float32's limit (%r: %.3g, as an attention mask's fill value): no "
                           "integer scale can hold them and the other values, so they stay in float (the rest is "
                           "quantized): %s", len(fill), name, value, ", ".join(fill))

        runner = _Runner(prepared, provider_list) if select_n else None
        first = data[0]
        memo: dict[tuple[str, str, int], float] = {}
        scores: dict[str, float] = {}
        for m in candidates:
            params = activation_params(prepared, stats, m, percentile, activation_symmetric, int16, memo)
            proto = write_qdq(prepared, work / f"calibrated_{m}.onnx", params, first, per_channel=per_channel,
                              symmetric=activation_symmetric and m != "min-max", float_nodes=keep_float,
                              float_tensors=fill)
            if runner is not None:
                scores[m] = runner.cosine(proto, data, select_n, tick)
                logger.info("method %s: output cosine %.6f on the first %d samples", m, scores[m], select_n)
            del proto  # one candidate model in memory at a time
        chosen = candidates[0]
        for m in candidates[1:]:
            if scores[m] > scores[chosen] or math.isnan(scores[chosen]):
                chosen = m
        if len(candidates) > 1:
            logger.info("Select %s method.", chosen)
        path = work / f"calibrated_{chosen}.onnx"
        proto = onnx.load(str(path))
        _check_written(proto, prepared, int16, keep_float)
        deployed_n = min(n, DEPLOYED_SAMPLES)
        runner = None  # its float session
        cosine, defined_cosine, deployed_cosine = _final_scores(proto, data, n, deployed_n, provider_list, tick)
        model_path = out / model_name
        write_atomic(model_path, lambda f: f.write(path.read_bytes()), binary=True)
        if source.folder is None:
            replace_folder(folder, data_dir)
        ranges = _ranges(proto, prepared, stats)

    if len(candidates) == 1:
        scores = {chosen: cosine}
    if cosine < LOW_COSINE:  # (NaN is not below: the deployment note says what failed)
        which = f"the {chosen} method" if len(candidates) == 1 else f"{chosen}, the best of {len(candidates)} methods"
        check = "Compare the methods (method 'default'), check" if len(candidates) == 1 else "Check"
        logger.warning("the calibrated model's output cosine similarity against float is %.6f with %s: it loses much of "
                       "the output. %s that the data is preprocessed as the model expects, and find the nodes to keep in "
                       "higher precision with ptqdebug runall", cosine, which, check)
    logger.info("float vs calibrated output cosine similarity: %.6f (first %d samples: %.6f, as ONNX Runtime deploys it %.6f)",
                cosine, deployed_n, defined_cosine, deployed_cosine)
    return CalibrationResult(
        model_path=str(model_path), data_dir=str(data_dir), method=chosen, cosine=cosine, candidates=scores,
        deployment=(deployed_n, defined_cosine, deployed_cosine),
        ranges=ranges, num_samples=n,
        options={
            "method": method, "percentile": percentile, "per_channel": bool(per_channel),
            "activation_symmetric": bool(activation_symmetric), "all_int16": bool(all_int16),
            "int16_nodes": [str(x) for x in ([int16_nodes] if isinstance(int16_nodes, str) else (int16_nodes or []))],
            "float_nodes": keep_float, "fill_values_in_float": list(fill),
            "optimize": bool(optimize), "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(pre).items()},
        },
    )


def _check_outside_inputs(out: Path, inputs: object) -> None:
    """Refuse an output folder inside (or equal to) the folder of calibration inputs: the files
    written there would be read as inputs next time. ``OUT/calibration_data`` itself as the input
    (calibrating again from an earlier run's data) is fine: it is read in place."""
    if not isinstance(inputs, (str, os.PathLike)) or not Path(inputs).is_dir():
        return
    source, target = Path(inputs).resolve(), out.resolve()
    if target == source or source in target.parents:
        raise OptionError(f"output folder {str(out)!r} is inside the calibration inputs folder {os.fspath(inputs)!r}; "
                          "expected a folder outside it (files written there would be read as inputs next time)")


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run created (deepest first) where nothing was written into them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _body_nodes(graph: onnx.GraphProto) -> int:
    """How many nodes lie inside the If/Loop/Scan bodies of ``graph``, at any depth."""
    return sum(len(body.node) + _body_nodes(body) for node in graph.node for _, body in bodies_of(node))


def _check_written(proto: onnx.ModelProto, prepared: PreparedModel, int16: set[str], float_nodes: Sequence[str] = ()) -> None:
    """Refuse a model without calibration nodes; warn about what ORT left float or set itself."""
    inner = _body_nodes(proto.graph)
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        if float_nodes:
            raise OptionError(f"float_nodes switch off every calibration node ({len(float_nodes)} names given), so the "
                              "written model would be the float model; expected fewer nodes to keep in float")
        why = (f"the model's {inner} nodes lie inside If/Loop/Scan bodies, which it does not quantize" if inner
               else "the model has none of the operators it quantizes (Conv, MatMul, Gemm, ...)")
        raise ModelError(f"ONNX Runtime's quantizer inserted no calibration nodes: {why}; expected a model whose "
                         "graph it can quantize (quantize such a model with another tool, then run the analyses on it)")
    if inner:
        logger.warning("%d nodes inside If/Loop/Scan bodies stay float: ONNX Runtime's quantizer does not quantize "
                       "subgraphs", inner)
    written = read_activation_quantizers(proto, prepared.tensors)
    measured = set(prepared.tensors)
    stray = [q.name for q in written if q.tensor not in measured]
    if stray:
        logger.warning("%d activation calibration nodes got ONNX Runtime's one-sample range (e.g. %r)", len(stray), stray[0])
    shared = sorted(t for t in int16 if any(q.tensor == t and q.qtype != "int16" for q in written))
    if shared:
        logger.warning("int16 was asked for %r but ONNX Runtime gives it the parameters of its input (as for MaxPool/Reshape outputs)", shared[0])
