"""Candidates scored in worker processes or on Ray give the in-process results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import ptqdebug as dbg
from ptqdebug.errors import OptionError


def _scores(result) -> dict[str, float]:
    return {k: v["cosine-similarity"] for k, v in result.as_mapping().items()}


@pytest.mark.parametrize("node_type", ["node", "weight"])
def test_workers_equal_in_process(cnn_dir: Path, node_type: str) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    one = dbg.sensitivity_of_nodes(dbg.open_context(model, data, cache=False), node_type=node_type, data_num=3)
    seen: list[tuple[int, int]] = []
    ctx = dbg.open_context(model, data, cache=False, workers=2)
    two = dbg.sensitivity_of_nodes(ctx, node_type=node_type, data_num=3, progress=lambda d, t: seen.append((d, t)))
    assert list(_scores(two)) == list(_scores(one))
    assert all(abs(_scores(two)[k] - v) < 1e-6 for k, v in _scores(one).items())
    assert ctx.engine.runs == 0  # everything ran in the workers
    assert seen and seen[-1][0] == seen[-1][1]


def test_cli_workers_flag(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ptqdebug.cli import main

    assert main(["get-sensitivity-of-nodes", str(cnn_dir / "pc_int8_pairs.onnx"), str(cnn_dir / "calibration_data"),
                 "--workers", "2", "--no-cache"]) == 0
    assert "node sensitivity" in capsys.readouterr().out


def test_bad_workers_and_executor(cnn_dir: Path) -> None:
    for kw in ({"workers": 0}, {"workers": "2"}, {"executor": "spark"}):
        with pytest.raises(OptionError):
            dbg.open_context(cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data", **kw)


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
    assert all(abs(_scores(remote)[k] - v) < 1e-6 for k, v in _scores(local).items())
