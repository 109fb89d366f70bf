"""A helper process of a local worker pool, its own side: started as ``python -m ptqdebug.parallel``
by :class:`~ptqdebug.parallel.pool.WorkerPool`, it handles the parent's messages on stdin (reading
the model, or taking the parent's; sweeps, references, units) and writes its replies on stdout."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any

from ..errors import PtqDebugError
from ..metrics import Metric, get_metrics
from ..model import CalibratedModel
from ..pipes import read_message, write_message
from .stamps import file_stamps, model_key
from .unit import score_unit

__all__ = ["main"]


class _HelperState:
    """What a helper keeps between messages: the model, an engine (sessions stay across sweeps),
    the running sweep and the reference it was sent last."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.model: CalibratedModel | None = None
        self.engine: Any = None
        self.read: tuple[object, ...] | None = None  # file stamps around this helper's own reading
        self.stashed: list[tuple[Any, ...]] | None = None  # messages held while the model comes
        self.sid = 0
        self.configs: list[frozenset[str]] = []
        self.metrics: tuple[Metric, ...] = ()
        self.compare_at: tuple[str, ...] = ()
        self.groups: list[list[int]] = []  # the sample indices of each sample group of the sweep
        self.refs: dict[int, tuple[Any, list[int] | None]] = {}

    def handle(self, message: tuple[Any, ...]) -> None:
        kind, sid = message[0], message[1]
        if self.stashed is not None and kind != "model":
            self.stashed.append(message)
            return
        if kind == "load":
            self._load(message[2])
        elif kind == "check":
            stamps, key = message[2:]
            if self.model is None or self.read != (stamps, stamps) or model_key(self.model) != key:
                self.model, self.engine, self.stashed = None, None, []  # ask for the parent's model
                write_message(self.sink, ("need-model", 0))
        elif kind == "model":
            self.model, self.engine = message[2], None
            stashed, self.stashed = self.stashed or [], None
            for m in stashed:
                self.handle(m)
        elif kind == "sweep":
            self._begin(sid, *message[2:])
        elif kind == "ref" and sid == self.sid:
            from ..engine.engine import Reference

            g, values, edges = message[2:]
            if g in self.refs:
                self.refs[g][0].values.update(values)  # type: ignore[attr-defined]
            else:
                self.refs[g] = (Reference(sample={}, values=values, fetch=self.compare_at), edges)
        elif kind == "drop" and sid == self.sid:
            for g in message[2]:
                self.refs.pop(g, None)
        elif kind == "unit" and sid == self.sid:
            g, c = message[2:]
            ref, edges = self.refs[g]
            vals = score_unit(self.engine, ref, self.configs[c], self.compare_at, self.metrics, edges, self.groups[g])
            write_message(self.sink, ("result", sid, g, c, vals))  # asks for the next unit too
        elif kind == "end" and sid == self.sid:
            self.refs = {}
        # anything else belongs to a sweep that is over

    def _load(self, files: tuple[str | None, str | None]) -> None:
        from ..model import load_model

        before = file_stamps(files)
        try:
            self.model = load_model(str(files[0]), files[1])
        except Exception:  # noqa: BLE001 - the parent reads it too and reports why; this helper will ask for it
            self.model = None
        self.read = (before, file_stamps(files))

    def _begin(self, sid: int, providers: tuple[str, ...], threads: int | None, plan: Any,
               types: Mapping[str, Any], configs: list[frozenset[str]], metrics: tuple[str, ...],
               compare_at: tuple[str, ...], groups: list[list[int]]) -> None:
        from ..engine.engine import Engine

        if self.model is None:
            raise RuntimeError("no model was sent")
        engine = self.engine
        if engine is None or engine.providers != list(providers) or engine.threads != threads or engine.plan != plan:
            engine = Engine(self.model, providers=list(providers), threads=threads)
            engine.plan = plan  # the cuts of the parent's engine, so every session is the same
        engine._types.update(types)  # and the types it gave the values crossing them
        self.engine = engine
        self.sid, self.configs, self.compare_at, self.groups = sid, configs, compare_at, groups
        self.metrics = get_metrics(list(metrics))
        self.refs = {}
        write_message(self.sink, ("want", sid, 2))  # one to run, one to come meanwhile


def main() -> int:
    """Helper process: handle the parent's messages until its end of input."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    state = _HelperState(sink)
    while True:
        try:
            message = read_message(source)
        except EOFError:
            return 0
        try:
            state.handle(message)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            # a user's mistake (such as a metric function that raises) goes back as itself: one line
            user = type(exc).__name__ if isinstance(exc, PtqDebugError) else ""
            write_message(sink, ("error", message[1] if isinstance(message, tuple) else 0,
                                 str(exc) if user else f"{type(exc).__name__}: {exc}", user))
