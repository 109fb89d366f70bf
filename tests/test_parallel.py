"""Candidates scored in worker processes or on Ray give the in-process results, bit for bit."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug import parallel
from ptqdebug.errors import OptionError
from ptqdebug.parallel import local as local_sweep
from ptqdebug.parallel import pool as worker_pool

METRICS = ["cosine-similarity", "mse", "sqnr"]


def _scores(result) -> dict[str, dict[str, float]]:
    return result.as_mapping()


def _same(a, b) -> bool:
    """Same entries in the same order with the same scores, bit for bit (NaN equal to NaN)."""
    sa, sb = _scores(a), _scores(b)
    return list(sa) == list(sb) and all(
        np.array_equal(np.array(list(sa[k].values())), np.array(list(sb[k].values())), equal_nan=True) for k in sa
    ) and [e.nonfinite for e in a.entries] == [e.nonfinite for e in b.entries]


@pytest.fixture
def files(cnn_dir: Path) -> tuple[Path, Path]:
    return cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"


def _one(files, node_type: str, data_num: int | None = 3):
    ctx = dbg.open_context(*files, cache=False, threads=1)
    return dbg.sensitivity_of_nodes(ctx, node_type=node_type, metrics=METRICS, data_num=data_num)


@pytest.mark.parametrize("node_type", ["node", "weight", "activation"])
def test_workers_equal_in_process(files, node_type: str) -> None:
    one = _one(files, node_type)
    seen: list[tuple[int, int]] = []
    ctx = dbg.open_context(*files, cache=False, workers=2, threads=1)
    two = dbg.sensitivity_of_nodes(ctx, node_type=node_type, metrics=METRICS, data_num=3,
                                   progress=lambda d, t: seen.append((d, t)))
    assert _same(two, one)
    assert ctx.engine.threads == 1 and ctx.pool is not None and ctx.pool.size == 1
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("budget", [local_sweep.REFERENCE_BUDGET, 1])
def test_helpers_alone_equal_in_process(files, monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """With this process only handing out units, every unit is scored in a helper; a budget of
    one byte keeps one sample open at a time."""
    monkeypatch.setattr(local_sweep, "PARENT_TAKES_PART", False)
    monkeypatch.setattr(local_sweep, "REFERENCE_BUDGET", budget)
    one = _one(files, "node", data_num=None)
    ctx = dbg.open_context(*files, cache=False, workers=2, threads=1)
    groups = ctx.sample_groups(None)  # one sample each on CPU; batches on a GPU provider
    runs = ctx.engine.runs
    two = dbg.sensitivity_of_nodes(ctx, node_type="node", metrics=METRICS, data_num=None)
    assert _same(two, one)
    assert ctx.pool.size == 2 and ctx.pool.units == len(one.entries) * len(groups)
    assert ctx.engine.runs - runs == len(groups) * len(ctx.engine.plan.segments)  # float references only


def test_pool_kept_across_sweeps(files) -> None:
    ctx = dbg.open_context(*files, cache=False, workers=2, threads=1)
    first = dbg.sensitivity_of_nodes(ctx, node_type="weight", metrics=METRICS, data_num=3)
    pids = [h.proc.pid for h in ctx.pool.helpers]
    second = dbg.sensitivity_of_nodes(ctx, node_type="activation", metrics=METRICS, data_num=2)
    assert [h.proc.pid for h in ctx.pool.helpers] == pids
    assert _same(first, _one(files, "weight")) and _same(second, _one(files, "activation", 2))


def test_model_object_and_changed_file(files, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model given as an object goes to the helpers pickled; a helper whose own reading of the
    file may differ from this process's asks for this process's model."""
    import onnx

    monkeypatch.setattr(local_sweep, "PARENT_TAKES_PART", False)
    one = _one(files, "node")
    ctx = dbg.open_context(onnx.load(str(files[0])), files[1], cache=False, workers=2, threads=1)
    assert _same(dbg.sensitivity_of_nodes(ctx, node_type="node", metrics=METRICS, data_num=3), one)

    ctx = dbg.open_context(*files, cache=False, threads=1)
    pool = parallel.WorkerPool(2)
    pool.load([str(files[0]), None])
    pool.loaded(ctx.model, ("stamps", "that", "differ"))
    worker_pool.attach_pool(ctx, pool)
    ctx.workers = 2
    assert _same(dbg.sensitivity_of_nodes(ctx, node_type="node", metrics=METRICS, data_num=3), one)
    assert ctx.pool is pool
    assert pool.units == len(one.entries) * len(ctx.sample_groups(3))


def test_workers_reuse_scores_already_run(files, monkeypatch: pytest.MonkeyPatch) -> None:
    """With workers too, partial quantization reads the node sweep's single-node scores instead
    of sending them to the helpers again; the numbers are those of one process."""
    from ptqdebug.analyses.partial import partial_quantization

    monkeypatch.setattr(local_sweep, "PARENT_TAKES_PART", False)  # every unit goes through the pool
    here = dbg.open_context(*files, cache=False, threads=1)
    nodes = [e.name for e in dbg.sensitivity_of_nodes(here, node_type="node", data_num=2).entries]
    want = partial_quantization(here, nodes, data_num=2)
    ctx = dbg.open_context(*files, cache=False, workers=2, threads=1)
    dbg.sensitivity_of_nodes(ctx, node_type="node", data_num=2)
    before = ctx.pool.units
    got = partial_quantization(ctx, nodes, data_num=2)
    assert (got.baseline, got.single, got.partial) == (want.baseline, want.single, want.partial)
    groups = len(ctx.sample_groups(2))
    # the baseline and the partial ones only, less those the sweep ran already (a prefix's
    # complement can be one node's calibration nodes)
    model = ctx.model
    swept = {frozenset(model.expand(n)) for n in nodes}
    configs = {model.calibrated_configuration - set().union(*(model.expand(n) for n in got.nodes[:k + 1]))
               for k in range(len(got.nodes))}
    assert ctx.pool.units - before == (1 + len(configs - swept)) * groups


def test_helper_killed(files, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper that dies makes the sweep fail with a clear error; the next sweep starts afresh."""
    monkeypatch.setattr(local_sweep, "PARENT_TAKES_PART", False)
    ctx = dbg.open_context(*files, cache=False, workers=2, threads=1)
    victim = ctx.pool.helpers[0].proc

    def kill(done: int, total: int) -> None:
        if victim.poll() is None:
            victim.kill()

    with pytest.raises(RuntimeError, match="sweep worker"):
        dbg.sensitivity_of_nodes(ctx, node_type="node", data_num=3, progress=kill)
    assert ctx.pool.closed
    deadline = time.monotonic() + 10
    while any(h.proc.poll() is None for h in ctx.pool.helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(h.proc.poll() is not None for h in ctx.pool.helpers)
    again = dbg.sensitivity_of_nodes(ctx, node_type="node", metrics=METRICS, data_num=3)
    assert _same(again, _one(files, "node"))
    assert victim.pid not in [h.proc.pid for h in ctx.pool.helpers]


def test_three_workers(files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_sweep, "_cores", lambda: 4)  # (more workers than cores are refused)
    ctx = dbg.open_context(*files, cache=False, workers=3, threads=1)
    assert ctx.pool.size == 2
    assert _same(dbg.sensitivity_of_nodes(ctx, node_type="node", metrics=METRICS, data_num=None),
                 _one(files, "node", data_num=None))


def test_helpers_exit_with_the_context(files, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    monkeypatch.setattr(local_sweep, "_cores", lambda: 4)  # (more workers than cores are refused)
    ctx = dbg.open_context(*files, cache=False, workers=3, threads=1)
    procs = [h.proc for h in ctx.pool.helpers]
    assert len(procs) == 2
    del ctx
    deadline = time.monotonic() + 10  # (a thread of the run may hold the context a moment longer: seen once in 1,400 tests)
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert all(p.poll() is not None for p in procs)


def test_cli_workers_flag(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptqdebug.cli import main

    assert main(["get-sensitivity-of-nodes", str(cnn_dir / "pc_int8_pairs.onnx"), str(cnn_dir / "calibration_data"),
                 "--workers", "2", "--no-cache"]) == 0
    assert "node sensitivity" in capsys.readouterr().out


def test_bad_workers_and_executor(cnn_dir: Path) -> None:
    for kw in ({"workers": 0}, {"workers": "2"}, {"executor": "spark"}):
        with pytest.raises(OptionError):
            dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data", **kw)


def test_bad_model_stops_the_helpers(tmp_path: Path, cnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers start before the model is read; a model that cannot be read stops them."""
    pools: list[parallel.WorkerPool] = []

    class Recorded(parallel.WorkerPool):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            pools.append(self)

    monkeypatch.setattr(worker_pool, "WorkerPool", Recorded)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(dbg.ModelError):
        dbg.open_context(bad, cnn_dir / "calibration_data", workers=2)
    assert len(pools) == 1 and pools[0].closed
    assert all(h.proc.poll() is not None for h in pools[0].helpers)


@pytest.mark.slow
def test_ray_executor_equals_local(cnn_dir: Path) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'ptqdebug[ray]'; make test installs it)")
    import ray

    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    local = dbg.sensitivity_of_nodes(dbg.open_context(model, data, cache=False), node_type="node", data_num=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a local instance for the test
    try:
        ctx = dbg.open_context(model, data, cache=False, workers=2, executor="ray")
        remote = dbg.sensitivity_of_nodes(ctx, node_type="node", data_num=2)
    finally:
        ray.shutdown()
    assert list(_scores(remote)) == list(_scores(local))
    assert all(abs(_scores(remote)[k]["cosine-similarity"] - v["cosine-similarity"]) < 1e-6
               for k, v in _scores(local).items())


def test_ctrl_c_during_a_ray_sweep_cancels_its_tasks_and_stops_the_instance_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's processes outlived an interrupted run by a minute or more (a trial); now its tasks are
    cancelled and the Ray instance ptqdebug started is shut down, while one the caller started
    stays (a fake Ray module records the calls)."""
    import sys
    import types

    from ptqdebug.parallel import cluster

    def fake_ray(initialized: bool) -> types.SimpleNamespace:
        calls: list[str] = []
        state = {"up": initialized}

        def interrupted_get(refs: list[str]) -> None:
            raise KeyboardInterrupt

        return types.SimpleNamespace(
            calls=calls, is_initialized=lambda: state["up"],
            init=lambda **kw: (calls.append("init"), state.update(up=True)),
            remote=lambda fn: types.SimpleNamespace(remote=lambda job: f"ref{job}"),
            get=interrupted_get, cancel=lambda ref, force: calls.append(f"cancel {ref}"),
            shutdown=lambda: calls.append("shutdown"))

    monkeypatch.setattr(cluster, "_check_ray_address", lambda address: None)
    for initialized, expected in ((False, ["init", "cancel ref1", "cancel ref2", "shutdown"]),
                                  (True, ["cancel ref1", "cancel ref2"])):
        ray = fake_ray(initialized)
        monkeypatch.setitem(sys.modules, "ray", ray)
        with pytest.raises(KeyboardInterrupt):
            cluster._run_ray([1, 2])  # type: ignore[list-item]
        assert ray.calls == expected
