"""ONNX Runtime sessions, built the one way ptqdebug needs them.

* Graph optimizations are off (``ORT_DISABLE_ALL``): every node runs as its own kernel, so a value
  is computed the same way whichever session computes it — the whole model, or any segment of the
  engine's plan. With them on, fusions and layout changes stop at a segment's edges and round
  differently in the middle of one: a float difference of 1e-7 that an int8 rounding further on
  can amplify to 1e-3 at the outputs (PP-OCRv4's detector), so that the same configuration scored
  serially, by helper processes or from a later cut gave different numbers. ONNX Runtime's QDQ
  fusions (integer kernels whose numerics differ from the calibrated model's definition) are off
  with them; ``session.disable_quant_qdq`` says so explicitly.
* ``use_deterministic_compute`` and a fixed thread count make repeated runs bit-identical.
* Providers: CPU by default, or the comma-separated list in ``$PTQDEBUG_PROVIDERS`` (so a whole
  test suite or script runs on an accelerator unchanged); any list ONNX Runtime accepts
  (``["CUDAExecutionProvider", "CPUExecutionProvider"]`` with onnxruntime-gpu).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Mapping, Sequence

import onnx
import onnxruntime as ort

from ..errors import ModelError, OptionError

#: What the engine's session options do to the numbers (see the module doc): part of the results
#: cache's key, so that results computed with other options are never reused. Change it whenever a
#: session option that changes results changes.
NUMERICS = "graph optimizations off, deterministic compute"

__all__ = ["NUMERICS", "SessionError", "deployed_session", "make_session", "ort_reason", "resolve_providers", "type_from_ort"]

_ORT_ELEM = {
    "float": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16, "double": onnx.TensorProto.DOUBLE,
    "bfloat16": onnx.TensorProto.BFLOAT16, "int8": onnx.TensorProto.INT8, "uint8": onnx.TensorProto.UINT8,
    "int16": onnx.TensorProto.INT16, "uint16": onnx.TensorProto.UINT16, "int32": onnx.TensorProto.INT32,
    "uint32": onnx.TensorProto.UINT32, "int64": onnx.TensorProto.INT64, "uint64": onnx.TensorProto.UINT64,
    "bool": onnx.TensorProto.BOOL, "string": onnx.TensorProto.STRING,
}


class SessionError(ModelError):
    """ONNX Runtime refused to build a session; ``reason`` is its own message, cleaned."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(f"ONNX Runtime cannot run the model ({reason}); expected a model ONNX Runtime can load{hint}")
        self.reason = reason


def _provider_names(text: str, source: str) -> list[str]:
    """``a,b`` or ``[a,b]`` (the list syntax of the other options) → names."""
    from ..listsyntax import parse_list

    value = parse_list(text, source) if text.strip().startswith("[") else text.split(",")
    if not all(isinstance(p, str) for p in value):
        raise OptionError(f"{source} is {text!r}, a nested list; expected names such as [CPUExecutionProvider]")
    return list(value)  # type: ignore[arg-type]


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """Check requested execution providers against what this onnxruntime build offers.

    ``None`` means ``$PTQDEBUG_PROVIDERS`` where it is set, else the CPU. A string is a
    comma-separated list, bracketed or not (``a,b``, ``[a,b]``)."""
    source = "providers"
    if providers is None and os.environ.get("PTQDEBUG_PROVIDERS"):
        providers, source = os.environ["PTQDEBUG_PROVIDERS"], "$PTQDEBUG_PROVIDERS"
    elif providers is None:
        providers = ["CPUExecutionProvider"]
    given = providers
    if isinstance(providers, str):
        providers = _provider_names(providers, source)
    providers = [p.strip() for p in providers if p.strip()]
    if not providers:
        leave = "leave it out" if source == "providers" else "unset it"
        raise OptionError(f"no execution provider given ({source} is {given!r}); expected a name such as "
                          f"CPUExecutionProvider or a comma-separated list, or {leave} for the CPU")
    available = ort.get_available_providers()
    aliases = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    out = [aliases.get(p.lower(), p) for p in providers]
    missing = [p for p in out if p not in available]
    if missing:
        hint = " (install the `gpu` extra: pip install 'ptqdebug[gpu]')" if "CUDAExecutionProvider" in missing else ""
        origin = f" (from {source}: fix or unset it)" if source != "providers" else ""
        raise OptionError(
            f"execution provider {', '.join(missing)}{origin} is not available in this onnxruntime build; "
            f"available: {', '.join(available)}{hint}"
        )
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    if "CUDAExecutionProvider" in out:
        _preload_cuda()
    return out


@functools.cache
def _preload_cuda() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels (onnxruntime-gpu[cuda,cudnn]) where this
    onnxruntime can; otherwise it finds them on the library path, or :func:`make_session` says
    that the session fell back to the CPU."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):
            preload()


def ort_reason(exc: BaseException) -> str:
    """ONNX Runtime's message without its status prefix and C++ source locations, on one line."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/onnxruntime_src/\S+:\d+ (\S+\(.*?\) )?", "", text)
    return text[:300]


def make_session(model: onnx.ModelProto, providers: Sequence[str], threads: int | None,
                 initializers: Mapping[str, ort.OrtValue] | None = None) -> ort.InferenceSession:
    """An inference session over ``model`` with ptqdebug's options; ``initializers`` give the
    values of the model's external-data stubs from memory, shared with other sessions, not copied
    (the caller keeps them alive as long as the session)."""
    so = ort.SessionOptions()
    if initializers:
        so.add_external_initializers(list(initializers), list(initializers.values()))
    so.log_severity_level = 4  # fatal only: ptqdebug reports failures itself, in one line
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # see the module doc
    so.use_deterministic_compute = True
    so.enable_cpu_mem_arena = False  # many sessions: an arena per session would keep each one's peak
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return _open(model.SerializeToString(), so, providers)


def deployed_session(model: str | bytes, providers: Sequence[str], threads: int | None) -> ort.InferenceSession:
    """A session over the calibrated model as a user deploys it: ONNX Runtime's defaults, so its
    QDQ fusions replace fake quantization by integer kernels (``model``: a file path, which keeps
    external data reachable, or serialized bytes)."""
    so = ort.SessionOptions()
    so.log_severity_level = 4
    if threads:
        so.intra_op_num_threads = threads
    return _open(model, so, providers)


def _open(model: str | bytes, so: ort.SessionOptions, providers: Sequence[str]) -> ort.InferenceSession:
    """``ort.InferenceSession`` with one-line errors, and an error where ONNX Runtime silently
    fell back from the requested provider to the CPU."""
    try:
        session = ort.InferenceSession(model, so, providers=_with_options(providers))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for invalid graphs
        reason = ort_reason(exc) or type(exc).__name__
        hint = ""
        if "Unsupported model IR version" in reason:
            hint = (f" (this onnxruntime {ort.__version__} is older than the onnx that saved the model: upgrade onnxruntime, "
                    "or save the model with an ir_version it reads)")
        raise SessionError(reason, hint) from None
    if providers and providers[0] not in session.get_providers():  # ORT falls back to the CPU silently
        raise OptionError(
            f"ONNX Runtime could not start {providers[0]} (the session fell back to {', '.join(session.get_providers())}); "
            "expected its libraries to load: for CUDA, install onnxruntime-gpu with matching CUDA and cuDNN "
            "(pip install 'onnxruntime-gpu[cuda,cudnn]'), or choose --providers cpu"
        )
    return session


#: Provider options that keep float numerics float and runs repeatable. TF32 matrix products (on by
#: default in CUDA's provider) round inputs to 10 mantissa bits, an error as large as the
#: quantization being debugged (measured: cosine differences vs the CPU of 8e-7 with TF32, 2e-8
#: without). cuDNN's exhaustive algorithm search times candidates on every session build, so two
#: sessions of one graph may pick different convolution algorithms; its heuristic picks by shape.
CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}
_PROVIDER_OPTIONS = {"CUDAExecutionProvider": CUDA_OPTIONS}


def _with_options(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    return [(p, _PROVIDER_OPTIONS[p]) if p in _PROVIDER_OPTIONS else p for p in providers]


def type_from_ort(type_str: str, shape: Sequence[object] | None) -> onnx.TypeProto:
    """The ONNX type of a value ONNX Runtime reports as e.g. ``tensor(float)`` (rank kept, dims free)."""
    if type_str.startswith("seq(") and type_str.endswith(")"):
        inner = type_from_ort(type_str[4:-1], None)
        return onnx.helper.make_sequence_type_proto(inner)
    elem = type_str[len("tensor("):-1] if type_str.startswith("tensor(") else type_str
    if elem not in _ORT_ELEM:
        raise ModelError(f"ptqdebug cannot pass a value of type {type_str} between graph parts")
    # ONNX Runtime reports [] both for scalars and for tensors of unknown rank: leave [] unset
    dims = [None] * len(shape) if shape else None
    return onnx.helper.make_tensor_type_proto(_ORT_ELEM[elem], dims)
