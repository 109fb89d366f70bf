"""The engine: runs the calibrated model under any configuration, exactly and cheaply.

A *configuration* is the set of enabled calibration nodes; the engine's outputs equal those of a
model in which exactly those calibration nodes fake-quantize and all others are the identity.

How it stays cheap (see :mod:`ptqdebug.engine.plan`):

* the graph is cut into segments; each has a *float* session (no calibration node on) and,
  built when first needed, switchable sessions: one with only the activation calibration nodes
  switchable (weights stay constants, which ONNX Runtime pre-packs) and one where weights are fed
  too (for configurations that switch a weight);
* :meth:`Engine.reference` runs the float sessions once per sample and keeps the tensors that
  cross the cuts;
* :meth:`Engine.run` starts at the first segment holding an enabled calibration node, takes what
  crosses into it from the reference, and re-runs only the segments whose inputs changed;
  :meth:`Engine.advance` does the same from an earlier configuration's run (a sequence of
  configurations that each switch one more node, as partial quantization scores, costs about
  half a forward pass each instead of a whole one).

No session is ever built per configuration: at most three per segment (per set of fetched tensors).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from ..model import CalibratedModel
from .build import SHARED_LOCATION, Built, build_model
from .plan import Plan, Segment, infer, make_plan
from .runtime import make_session, resolve_providers, type_from_ort

__all__ = ["Engine", "Reference"]

Sample = Mapping[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Reference:
    """A run of one sample: the values crossing every cut and the fetched tensors, under the
    configuration ``enabled`` (empty: the float run). A later run starts from it wherever its
    configuration first differs (:meth:`Engine.advance`)."""

    sample: Sample
    values: Mapping[str, np.ndarray] = field(repr=False)
    fetch: tuple[str, ...]
    enabled: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def _inferred_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Tensor types from ONNX shape inference (symbolic input dims kept), for those with a rank."""
    inferred = infer(proto)
    if inferred is None:  # best effort: ONNX Runtime's reports fill the gaps
        return {}
    out = {}
    for vi in inferred.graph.value_info:
        t = vi.type
        if t.HasField("tensor_type") and t.tensor_type.elem_type and t.tensor_type.HasField("shape"):
            out[vi.name] = t
    return out


class Engine:
    """Runs configurations of one calibrated model.

    Args:
        model: the calibrated model.
        providers: ONNX Runtime execution providers (default CPU).
        threads: intra-op threads per session (default: ONNX Runtime's choice).
        segments: how many segments to cut the graph into (default: about sqrt(#nodes)).
        shapes: input shapes of a typical sample, used to place the cuts well.
    """

    def __init__(
        self,
        model: CalibratedModel,
        *,
        providers: str | Sequence[str] | None = None,
        threads: int | None = None,
        segments: int | None = None,
        shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.model = model
        self.providers = resolve_providers(providers)
        self.threads = threads
        # Types of the values crossing cuts: ONNX shape inference where it knows the rank (static
        # dims like a Resize's `sizes` matter to ONNX Runtime), else what ONNX Runtime reports.
        self._types: dict[str, onnx.TypeProto] = _inferred_types(model.proto)
        self._types.update({vi.name: vi.type for vi in model.proto.graph.input})
        self.plan: Plan = make_plan(model, segments, shapes, self._types)
        self._nodes = list(model.proto.graph.node)
        self._sessions: OrderedDict[tuple[int, str, frozenset[str]], tuple[ort.InferenceSession, Built, list[str]]] = OrderedDict()
        # float and fake-quantized values of weights, for the segments in use (least recently
        # used dropped past WEIGHT_CACHE_BYTES: a sweep visits segments in order)
        self._weights: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._corrected: dict[str, dict[str, np.ndarray]] = {}  # see _corrections
        # large initializers, one copy for every session (see SHARE_BYTES)
        self._shared: dict[str, tuple[np.ndarray, ort.OrtValue]] = {}
        self._initializers = {t.name: t for t in model.proto.graph.initializer}
        self._switchable = frozenset(q.name for q in model.quantizers if q.exact)
        self._crossing = frozenset(t for seg in self.plan.segments for t in seg.outputs)  # refreshed by every run
        self.runs = 0  # segment session runs, for tests and benchmarks

    #: sessions with extra fetched tensors kept at once (each holds ONNX Runtime's state for its segment)
    EXTRA_SESSIONS = 4
    #: bytes of float + fake-quantized weight copies kept for switchable sessions
    WEIGHT_CACHE_BYTES = 128 * 2**20
    #: initializers of at least this many bytes are held once, as arrays every session is given
    #: (``SessionOptions.add_external_initializers``), instead of embedded in each session's
    #: model: a segment's weights are then in memory once plus ONNX Runtime's pre-packed copy per
    #: session, not twice per session (benchmarks/big_model.py, 2.2 GiB: peak RSS 20.7 → 13.4 GiB)
    SHARE_BYTES = 2**20

    def release_extra_sessions(self) -> None:
        """Drop the sessions built to fetch extra tensors (an analysis's own: they serve no other)."""
        for key in [k for k in self._sessions if k[2]]:
            del self._sessions[key]

    # -- sessions ---------------------------------------------------------------------------------
    def _variant(self, enabled: Collection[str] | None) -> str:
        """Which session a segment runs: ``float`` (the float model's graph, for ``enabled`` None:
        the numerics of the float model itself), ``activations`` (activation calibration nodes
        switchable, weights constant and so pre-packed by ONNX Runtime: the fast path of
        activation candidates) or ``all`` (weights fed as well)."""
        if enabled is None:
            return "float"
        if any(self.model.quantizer_map[q].kind == "weight" for q in enabled):
            return "all"
        return "activations"

    def _session(self, seg: Segment, variant: str, extra: frozenset[str]) -> tuple[ort.InferenceSession, Built, list[str]]:
        key = (seg.index, variant, extra)
        hit = self._sessions.get(key)
        if hit is not None:
            if extra:
                self._sessions.move_to_end(key)
            return hit
        outputs = [*seg.outputs, *sorted(extra - set(seg.outputs))]
        qmap = self.model.quantizer_map
        chosen = [q for q in seg.quantizers if q in self._switchable]
        if variant == "activations":
            chosen = [q for q in chosen if qmap[q].kind == "activation"]
        built = build_model(
            self.model,
            on=(),
            switchable=chosen if variant != "float" else (),
            nodes=self._nodes[seg.start:seg.stop],
            inputs=seg.inputs,
            outputs=outputs,
            input_types=self._types,
            shared=self._is_shared,
        )
        session = make_session(built.model, self.providers, self.threads, self._shared_values(built.model))
        for out in session.get_outputs():
            if out.name not in self._types:
                self._types[out.name] = type_from_ort(out.type, out.shape)
        # keep only the switch and weight names: the built model (a copy of the segment's
        # weights) is not needed once ONNX Runtime has its own
        entry = (session, Built(None, built.switches, built.weights, built.corrections),  # type: ignore[arg-type]
                 [o.name for o in session.get_outputs()])
        self._sessions[key] = entry
        if extra:  # sessions fetching extra tensors serve one analysis: keep only the last few
            extras = [k for k in self._sessions if k[2]]
            for old in extras[: max(0, len(extras) - self.EXTRA_SESSIONS)]:
                del self._sessions[old]
        return entry

    def _is_shared(self, t: onnx.TensorProto) -> bool:
        """Whether an initializer is given to sessions from the shared copy (large, numeric, from
        the model itself)."""
        if t.name not in self._initializers or t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            return False
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        return itemsize * int(np.prod(t.dims, dtype=np.int64)) >= self.SHARE_BYTES

    def _array(self, name: str) -> np.ndarray:
        """An initializer's value: the shared copy where it has one."""
        if name in self._shared:
            return self._shared[name][0]
        t = self._initializers[name]
        value = onnx.numpy_helper.to_array(t)
        if self._is_shared(t):
            self._shared[name] = (value, ort.OrtValue.ortvalue_from_numpy(value))
        return value

    def _shared_values(self, proto: onnx.ModelProto) -> dict[str, ort.OrtValue]:
        """The values of ``proto``'s shared-initializer stubs (see :func:`build.build_model`)."""
        stubs = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                 and any(e.key == "location" and e.value == SHARED_LOCATION for e in t.external_data)]
        for name in stubs:
            self._array(name)
        return {name: self._shared[name][1] for name in stubs}

    def _prepare_weights(self, weights: Collection[str]) -> None:
        """Float and fake-quantized value of each weight, the latter computed by the calibration
        node's own operators in ONNX Runtime; kept while recently used."""
        for q in weights:
            if q in self._weights:
                self._weights.move_to_end(q)
        todo = [q for q in weights if q not in self._weights]
        if not todo:
            return
        qmap = self.model.quantizer_map
        floats = {q: self._array(qmap[q].input) for q in todo}
        built = build_model(self.model, on=todo, nodes=[qmap[q].placeholder() for q in todo],
                            inputs=[], outputs=[qmap[q].output for q in todo], shared=self._is_shared)
        session = make_session(built.model, self.providers, self.threads, self._shared_values(built.model))
        values = session.run(None, {})
        for q, fq in zip(todo, values):
            self._weights[q] = (floats[q], fq)
        held = sum(a.nbytes + b.nbytes for a, b in self._weights.values())
        while held > self.WEIGHT_CACHE_BYTES and len(self._weights) > len(todo):
            _, (a, b) = self._weights.popitem(last=False)
            held -= a.nbytes + b.nbytes

    def _corrections(self, quantizer: str) -> dict[str, np.ndarray]:
        """The corrected values of a weight calibration node's corrections (a bias: small)."""
        values = self._corrected.get(quantizer)
        if values is None:
            q = self.model.quantizer_map[quantizer]
            values = self._corrected[quantizer] = {t.name: onnx.numpy_helper.to_array(t) for t in q.corrections}
        return values

    def weight_values(self, quantizer: str) -> tuple[np.ndarray, np.ndarray]:
        """A weight calibration node's float value and its fake-quantized value, the latter
        computed by the node's own operators exactly as every run uses it."""
        q = self.model.quantizer_map[quantizer]
        if q.kind != "weight":
            raise ValueError(f"{quantizer!r} is not a weight calibration node")
        self._prepare_weights([quantizer])
        return self._weights[quantizer]

    # -- running ----------------------------------------------------------------------------------
    def _extra(self, seg: Segment, fetch: Collection[str]) -> frozenset[str]:
        produced = self.plan.producer_segment
        return frozenset(t for t in fetch if produced.get(t) == seg.index and t not in seg.outputs)

    def _run_segment(self, seg: Segment, env: dict[str, np.ndarray], enabled: Collection[str] | None,
                     fetch: Collection[str], variant: str | None = None) -> None:
        """Run one segment over ``env`` (updated in place) with ``enabled`` calibration nodes on
        (None: the float model's own session), keeping its outputs and the ``fetch`` it produces;
        ``variant`` overrides :meth:`_variant`."""
        extra = self._extra(seg, fetch)
        session, built, names = self._session(seg, variant or self._variant(enabled), extra)
        feed = {name: env[name] for name in seg.inputs}
        if enabled is not None:
            for q, sw in built.switches.items():
                feed[sw] = np.array(q in enabled)
            self._prepare_weights(list(built.weights))
            for q, name in built.weights.items():
                w_float, w_quant = self._weights[q]
                feed[name] = w_quant if q in enabled else w_float
            for q, constants in built.corrections.items():
                corrected = self._corrections(q)
                for name in constants:
                    feed[name] = corrected[name] if q in enabled else self._array(name)
        self.runs += 1
        for name, value in zip(names, session.run(names, feed)):
            env[name] = value

    def reference(self, sample: Sample, fetch: Iterable[str] = ()) -> Reference:
        """Run the float model (every switchable calibration node off) on one sample."""
        fetch = tuple(dict.fromkeys(fetch))
        env: dict[str, np.ndarray] = dict(sample)
        for seg in self.plan.segments:
            self._run_segment(seg, env, None, fetch)
        return Reference(sample=sample, values=env, fetch=fetch)

    def run(self, ref: Reference, enabled: Collection[str], fetch: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Values of ``fetch`` (default: the reference's) with ``enabled`` calibration nodes on."""
        state = self.advance(ref, enabled, fetch)
        return {t: state.values[t] for t in state.fetch}

    def start(self, base: Reference, enabled: Collection[str]) -> int:
        """The first segment a run of ``enabled`` from ``base`` computes: the first where the two
        configurations differ."""
        return self.plan.first_segment(list((frozenset(enabled) & self._switchable) ^ base.enabled))

    def advance(self, base: Reference, enabled: Collection[str], fetch: Sequence[str] | None = None) -> Reference:
        """The run with ``enabled`` calibration nodes on, starting from ``base`` (the float
        reference or an earlier run of the same sample): a new base for later runs.

        Only the segments from the first one where the configurations differ are re-run, and of
        those only the ones whose inputs changed or whose calibration nodes differ. Every segment
        computes the same function of the same inputs whichever base it starts from, so the
        values are those of a run from the float reference, bit for bit.
        """
        fetch = base.fetch if fetch is None else tuple(fetch)
        missing = [t for t in fetch if t not in base.values and t not in base.fetch]
        if missing:
            raise ValueError(f"tensors {missing[:3]} were not fetched by the reference run")
        enabled = frozenset(enabled) & self._switchable
        changed = enabled ^ base.enabled
        env = dict(base.values)
        dirty: set[str] = set()
        for seg in self.plan.segments[self.plan.first_segment(list(changed)):]:
            if not changed.intersection(seg.quantizers) and not dirty.intersection(seg.inputs):
                continue
            here = enabled.intersection(seg.quantizers)
            self._run_segment(seg, env, here if here else None, fetch)
            dirty.update(seg.outputs)
            dirty.update(self._extra(seg, fetch))
        for t in set(base.fetch).difference(fetch, self._crossing):  # not refreshed: would be stale
            env.pop(t, None)
        return Reference(sample=base.sample, values=env, fetch=fetch, enabled=enabled)

    def local(self, base: Reference, enabled: Collection[str], tensors: Collection[str]) -> dict[str, np.ndarray]:
        """``tensors`` with ``enabled`` calibration nodes on, computed from ``base`` (a float
        reference) through no segment past the last one producing them: the error those
        calibration nodes add before ``tensors``, without what the rest of the graph does with it.

        The segments producing ``tensors`` run in their session with every calibration node
        switchable (as :meth:`trace` does), whatever ``enabled`` is: with nothing enabled it gives
        the float values in the same numerics, so a tensor ``enabled`` does not reach compares
        equal, bit for bit. Asking for the same ``tensors`` every time reuses one such session
        per segment.
        """
        wanted = frozenset(tensors)
        producers = {self.plan.producer_segment[t] for t in wanted}
        enabled = frozenset(enabled) & self._switchable
        first = min(self.plan.first_segment(list(enabled)), min(producers))
        env = dict(base.values)
        dirty: set[str] = set()
        for seg in self.plan.segments[first:max(producers) + 1]:
            here = enabled.intersection(seg.quantizers)
            if seg.index in producers:
                self._run_segment(seg, env, here, wanted, "all")
            elif here or dirty.intersection(seg.inputs):
                self._run_segment(seg, env, here or None, ())
            else:
                continue
            dirty.update(seg.outputs)
        return {t: env[t] for t in tensors}

    def trace(
        self,
        sample: Sample,
        configs: Sequence[Collection[str]],
        tensors: Sequence[str],
        visit: Callable[[str, np.ndarray, list[np.ndarray]], None],
    ) -> None:
        """Walk the graph once, calling ``visit(tensor, float value, [value per config])`` for each
        of ``tensors`` in topological order.

        The float run and every configuration advance segment by segment in lock step, and each
        segment's tensors are dropped once visited, so memory holds one segment's tensors, not
        the whole graph's ("mark all outputs" without its memory). Fetching a segment's inner
        tensors takes a session of its own: there, the float run and every configuration share
        one (every calibration node switchable, weights fed: cheap to build, as it pre-packs no
        weights; the float run is the configuration with nothing on), so a tensor that nothing
        upstream changed compares equal to its float value, bit for bit.
        """
        wanted = set(tensors)
        position = {t: i for i, t in enumerate(tensors)}
        switched: list[frozenset[str]] = [frozenset(c) & self._switchable for c in configs]
        float_env: dict[str, np.ndarray] = dict(sample)
        envs = [dict(sample) for _ in switched]
        dirty: list[set[str]] = [set() for _ in switched]
        for seg in self.plan.segments:
            extra = self._extra(seg, wanted)
            variant = "all" if extra else None  # one session for every run of this segment
            self._run_segment(seg, float_env, () if extra else None, extra, variant)
            for i, enabled in enumerate(switched):
                here = enabled.intersection(seg.quantizers)
                if here or dirty[i].intersection(seg.inputs):
                    self._run_segment(seg, envs[i], here if here or extra else None, extra, variant)
                    dirty[i].update(seg.outputs)
                    dirty[i].update(extra)
                else:
                    for t in (*seg.outputs, *extra):
                        envs[i][t] = float_env[t]
            produced = [t for t in (*seg.outputs, *sorted(extra)) if t in wanted]
            for t in sorted(produced, key=position.__getitem__):
                visit(t, float_env[t], [env[t] for env in envs])
            for t in extra:
                float_env.pop(t, None)
                for env in envs:
                    env.pop(t, None)
        self.release_extra_sessions()  # built for this walk's tensors only
