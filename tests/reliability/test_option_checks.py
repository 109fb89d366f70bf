"""Options that used to be taken as given: worker counts, booleans, thresholds, providers, Ray's
address, the results cache's entries and a few command-line spellings. Each bad value is one
line (exit status 2 from the CLI, an :class:`OptionError` from the API) before any work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import ptqdebug as dbg
from ptqdebug.cli import main
from ptqdebug.errors import OptionError
from ptqdebug.parallel import local as local_sweep
from tests.reliability.models import cnn_qdq


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return cnn_qdq(tmp_path_factory.mktemp("options"))


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI on ``argv``: exit status 2 and exactly one line, ``ptqdebug: error: ...``."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ptqdebug: error: "), lines
    return lines[0]


# 1. workers: at most the cores here, and never more processes than a sweep has units

def test_workers_above_the_cores_are_refused(cnn: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(local_sweep, "_cores", lambda: 2)
    started: list[int] = []
    monkeypatch.setattr(local_sweep.WorkerPool, "__init__", lambda self, size: started.append(size))  # type: ignore[misc]
    with pytest.raises(OptionError, match=r"workers is 3, more than the 2 cores"):
        dbg.get_sensitivity_of_nodes(cnn[0], calibrated_data=cnn[1], workers=3, cache=False)
    with pytest.raises(OptionError, match=r"more than the 2 cores"):
        dbg.open_context(*cnn, workers=10**6)
    assert not started
    line = _one_error(capsys, ["get-sensitivity-of-nodes", str(cnn[0]), str(cnn[1]), "--workers", "40"])
    assert "2 cores" in line and "at most 2" in line


def test_workers_on_ray_are_not_bounded_by_the_cores_but_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_sweep, "_cores", lambda: 2)
    assert local_sweep.check_workers(64, "ray") == 64
    for bad in (0, -1, "2", 2.0, True):
        with pytest.raises(OptionError, match="whole number >= 1"):
            local_sweep.check_workers(bad, "ray")


def test_no_more_helpers_than_units(cnn: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool started for a sweep of two units gets one helper (this process scores too), not
    seven; a later sweep with more units grows the same pool."""
    monkeypatch.setattr(local_sweep, "_cores", lambda: 8)
    plain = dbg.open_context(*cnn, cache=False, threads=1)
    weights = [q.name for q in plain.model.weight_quantizers][:2]
    acts = [q.name for q in plain.model.activation_quantizers][:4]
    want = [dbg.sensitivity_of_nodes(plain, node_type=kind, interested_nodes=names).as_mapping()
            for kind, names in (("weight", weights), ("activation", acts))]
    ctx = dbg.open_context(*cnn, cache=False, threads=1)
    got = dbg.get_sensitivity_of_nodes(ctx, node_type="weight", interested_nodes=weights, workers=8)
    assert ctx.pool is not None and ctx.pool.size == 1
    first = ctx.pool.helpers[0].proc.pid
    got4 = dbg.get_sensitivity_of_nodes(ctx, node_type="activation", interested_nodes=acts, workers=8)
    assert ctx.pool.size == 3 and ctx.pool.helpers[0].proc.pid == first
    assert [got, got4] == want


# 2. booleans are True or False, not any truthy value

@pytest.mark.parametrize("value", ["no", "false", 2, None, "x"])  # (0 and 1 are taken, as False and True)
def test_bool_options_of_functions_here(cnn: tuple[Path, Path], tmp_path: Path, value: object) -> None:
    with pytest.raises(OptionError, match=r"cache is .*; expected True or False"):
        dbg.get_sensitivity_of_nodes(cnn[0], calibrated_data=cnn[1], cache=value)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"visualize is .*; expected True or False"):
        dbg.get_calibration_nodes_stat_info(*cnn, save_dir=tmp_path / "o", visualize=value)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("call", ["plot_acc_error", "get_sensitivity_of_nodes", "runall_verbose", "runall_average_mode",
                                  "runall_report"])
def test_bool_options_of_other_functions(cnn: tuple[Path, Path], tmp_path: Path, call: str) -> None:
    model, data = cnn
    with pytest.raises(OptionError, match="expected True or False"):
        if call == "plot_acc_error":
            dbg.plot_acc_error(data, model, quantize_node=["weight"], average_mode="false", save_dir=tmp_path)  # type: ignore[arg-type]
        elif call == "get_sensitivity_of_nodes":
            dbg.get_sensitivity_of_nodes(model, calibrated_data=data, verbose="no")  # type: ignore[arg-type]
        else:
            option = call.removeprefix("runall_")
            dbg.runall(model, data, tmp_path / "r", **{option: "x"})  # type: ignore[arg-type]


# 3. pick_threshold in the metric's direction

def test_pick_threshold_below_a_lower_is_better_best(cnn: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for metric in ("mse", "mre", "chebyshev"):
        with pytest.raises(OptionError, match=rf"below {metric}'s best score 0"):
            dbg.sensitivity_analysis(*cnn, pick_threshold=-5, metric=metric, save_dir=tmp_path / "o")
    line = _one_error(capsys, ["sensitivity-analysis", str(cnn[0]), str(cnn[1]), "-m", "mse", "-p", "-5", "-sd", str(tmp_path / "o")])
    assert "expected a number >= 0" in line
    assert not (tmp_path / "o").exists()


def test_pick_threshold_outside_the_cosine_range_says_which_side(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                                 cnn: tuple[Path, Path]) -> None:
    args = ["sensitivity-analysis", str(cnn[0]), str(cnn[1]), "-sd", str(tmp_path / "o"), "-p"]
    assert "below -1 no node is picked" in _one_error(capsys, [*args, "-5"])
    assert "above 1 every node is picked" in _one_error(capsys, [*args, "1.5"])


def test_no_node_picked_says_which_way_to_move(cnn: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sensitivity-analysis", str(cnn[0]), str(cnn[1]), "-m", "mse", "-p", "1e9", "-sd", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "no node's mse is at or above pick_threshold 1e+09; lower it (-p)" in err and "raise it" not in err
    assert main(["sensitivity-analysis", str(cnn[0]), str(cnn[1]), "-p", "-1", "-sd", str(tmp_path)]) == 0
    assert "no node's cosine-similarity is at or below pick_threshold -1; raise it (-p)" in capsys.readouterr().err


# 4. a results-cache entry of another shape is a miss, computed again and overwritten

@pytest.mark.parametrize("entry", ["{}", "[]", "3", "null", '{"entries": 5}', '"text"',
                                   ('{"node_type": "weight", "metrics": ["cosine-similarity"], "compared": [], "samples": 1, '
                                    '"entries": [{"name": "a", "quantizers": [], "scores": {}}]}')])
def test_malformed_cache_entry_is_a_miss(cnn: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], entry: str) -> None:
    monkeypatch.setenv("PTQDEBUG_CACHE_DIR", str(tmp_path / "cache"))
    first = dbg.get_sensitivity_of_nodes(cnn[0], calibrated_data=cnn[1], node_type="weight")
    (path,) = (tmp_path / "cache").glob("*.json")
    path.write_text(entry)
    ctx = dbg.open_context(*cnn)
    assert dbg.get_sensitivity_of_nodes(ctx, node_type="weight") == first
    assert ctx.cache.hits == 0 and ctx.engine.runs > 0
    assert json.loads(path.read_text())["node_type"] == "weight"  # overwritten
    path.write_text(entry)
    assert main(["get-sensitivity-of-nodes", str(cnn[0]), str(cnn[1]), "-n", "weight"]) == 0
    assert "Traceback" not in capsys.readouterr().err


# 5. Ray's address

@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
@pytest.mark.parametrize("address,message", [
    ("garbage", r"RAY_ADDRESS is 'garbage'; expected host:port"),
    ("10.0.0.5:port", r"RAY_ADDRESS is '10.0.0.5:port'; expected host:port"),
    ("127.0.0.1:1", r"cannot reach the Ray cluster at RAY_ADDRESS='127.0.0.1:1'"),  # nothing listens on port 1
])
def test_bad_ray_address(cnn: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         address: str, message: str) -> None:
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(OptionError, match=message):
        dbg.get_sensitivity_of_nodes(cnn[0], calibrated_data=cnn[1], executor="ray", cache=False)
    assert "RAY_ADDRESS" in _one_error(capsys, ["get-sensitivity-of-nodes", str(cnn[0]), str(cnn[1]), "--executor", "ray",
                                                "--no-cache"])


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_that_cannot_connect_is_one_line(cnn: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """What Ray itself refuses when it connects ('auto' with no cluster running, a head that does
    not answer as one) is one line naming RAY_ADDRESS."""
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is connected already")

    def refuse(**kw: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    ctx = dbg.open_context(*cnn, cache=False, workers=2, executor="ray")
    with pytest.raises(OptionError, match=r"cannot connect to the Ray cluster at RAY_ADDRESS='auto': Could not find any "
                                          r"running Ray instance\.; expected a running cluster"):
        dbg.sensitivity_of_nodes(ctx, node_type="weight")


# 6. execution providers

@pytest.mark.parametrize("value", ["", ",,", " , ", []])
def test_no_provider_given(cnn: tuple[Path, Path], value: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError, match="no execution provider given"):
        dbg.get_sensitivity_of_nodes(cnn[0], calibrated_data=cnn[1], providers=value, cache=False)  # type: ignore[arg-type]
    if isinstance(value, str):
        line = _one_error(capsys, ["get-sensitivity-of-nodes", str(cnn[0]), str(cnn[1]), "--providers", value])
        assert "no execution provider given" in line


@pytest.mark.parametrize("value", ["[CPUExecutionProvider]", "['CPUExecutionProvider']", "[cpu, CPUExecutionProvider]"])
def test_providers_in_list_syntax(cnn: tuple[Path, Path], value: str) -> None:
    ctx = dbg.open_context(*cnn, providers=value, cache=False)
    assert ctx.engine.providers == ["CPUExecutionProvider"] * (2 if "cpu," in value else 1)


def test_providers_from_the_environment_say_so(cnn: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PTQDEBUG_PROVIDERS", "bogus")
    with pytest.raises(OptionError, match=r"bogus \(from \$PTQDEBUG_PROVIDERS: fix or unset it\) is not available"):
        dbg.open_context(*cnn, cache=False)
    assert "$PTQDEBUG_PROVIDERS" in _one_error(capsys, ["get-sensitivity-of-nodes", str(cnn[0]), str(cnn[1])])
    monkeypatch.setenv("PTQDEBUG_PROVIDERS", ",,")
    with pytest.raises(OptionError, match=r"no execution provider given \(\$PTQDEBUG_PROVIDERS is ',,'\)"):
        dbg.open_context(*cnn, cache=False)


# 7. command-line spellings

def test_an_empty_boolean_value(cnn: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["plot-acc-error", str(cnn[0]), str(cnn[1]), "-q", "[weight]", "-a", "", "-s", str(tmp_path / "o")])
    assert "-a/--average_mode: '' is not a boolean" in line
    assert not (tmp_path / "o").exists()


def test_a_stray_empty_argument(cnn: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert "unrecognized empty argument ''" in _one_error(capsys, ["info", str(cnn[0]), ""])


def test_mean_messages() -> None:
    from ptqdebug.calibration.preprocess import _per_channel, parse_floats

    with pytest.raises(OptionError, match=r"give 1 value .*or one per channel"):
        _per_channel((1.0, 2.0), 3, "mean", 0.0)
    with pytest.raises(OptionError, match="comma-separated"):
        parse_floats("a,b,c", "mean")


# 8. plot-acc-error needs -q or -nq, and says so in its help and before reading anything

def test_plot_acc_error_needs_q(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["plot-acc-error", str(tmp_path / "missing.onnx"), str(tmp_path / "missing")])
    assert "-q/--quantize_node and -nq/--non_quantize_node are both empty" in line
    with pytest.raises(SystemExit):
        main(["plot-acc-error", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "-q or -nq is required" in text and "give -q, -nq or both" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "cumulative error curves along the graph (needs -q or -nq)" in " ".join(capsys.readouterr().out.split())


def test_open_context_refuses_a_non_boolean_cache(cnn: tuple[Path, Path]) -> None:
    with pytest.raises(OptionError, match=r"cache is 'no'; expected True or False"):
        dbg.open_context(*cnn, cache="no")  # type: ignore[arg-type]


# API arguments of the wrong kind, found by a trial of careless calls: one line each, before any work
def test_api_arguments_of_the_wrong_kind_are_one_line(cnn: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = cnn
    with pytest.raises(OptionError, match=r"save_path is None; expected the model file to write"):
        dbg.export_model(model, None, [])  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"out_dir is None; expected the folder"):
        dbg.calibrate(model, data, None)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"inputs is 5; expected the model's input specs"):
        dbg.load_data(data, 5)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=r"inputs is \['x'\]"):
        dbg.load_data(data, ["x"])  # type: ignore[list-item]
    for threads in ("x", 2.5, -1, True):
        with pytest.raises(OptionError, match=r"threads is .*; expected a whole number >= 1"):
            dbg.open_context(model, data, threads=threads)  # type: ignore[arg-type]
    for call in (lambda: dbg.runall(model, data, tmp_path / "r", progress=5),  # type: ignore[arg-type]
                 lambda: dbg.get_sensitivity_of_nodes(model, calibrated_data=data, progress="x", cache=False)):  # type: ignore[arg-type]
        with pytest.raises(OptionError, match=r"progress is .*; expected a function called as progress\(done, total\)"):
            call()
    assert not (tmp_path / "r").exists()


def test_more_samples_than_there_are_and_an_empty_save_dir_are_refused(cnn: tuple[Path, Path], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.calibration.models import make_samples, tiny_cnn
    import onnx

    onnx.save(tiny_cnn(), tmp_path / "float.onnx")
    np_data = tmp_path / "d.npz"
    import numpy as np

    np.savez(np_data, x=np.concatenate([s["x"] for s in make_samples(3)]))
    line = _one_error(capsys, ["calibrate", str(tmp_path / "float.onnx"), str(np_data), "-o", str(tmp_path / "c"), "-d", "10"])
    assert f"there are only 3 samples in {str(np_data)!r}, but data_num is 10; use at most 3" in line
    assert not (tmp_path / "c").exists()
    model, data = cnn
    assert "save_dir is ''" in _one_error(capsys, ["get-sensitivity-of-nodes", str(model), str(data), "-s", ""])
