"""``ptqdebug calibrate`` through the real entry point: output lines, --config, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

import ptqdebug
from ptqdebug.calibration import cli as calibrate_cli
from ptqdebug.cli import args as cli_args
from ptqdebug.cli import commands, main
from tests.calibration.models import make_samples


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """``main(argv)`` with the calibrate command registered (as commands.register will do)."""
    parser = cli_args.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "calibrate" not in sub.choices:
        original = commands.register

        def register(s: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
            original(s)
            calibrate_cli.register(s)

        monkeypatch.setattr(commands, "register", register)

    def call(*argv: object) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_calibrate_prints_what_it_did(run, tiny_path: Path, tmp_path: Path) -> None:  # noqa: ANN001
    np.save(tmp_path / "x.npy", np.concatenate([s["x"] for s in make_samples(5)]))
    code, out, err = run("calibrate", tiny_path, tmp_path / "x.npy", "-o", tmp_path / "out", "--int16-nodes", "[conv2]")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"wrote {tmp_path / 'out' / 'calibrated_model.onnx'}"
    assert lines[1] == f"wrote {tmp_path / 'out' / 'calibration_data'} (5 samples)"
    assert any(line.startswith("Select ") and line.endswith(" method.") for line in lines)
    assert lines[-1].startswith("float vs calibrated output cosine similarity: 0.9")
    model = ptqdebug.load_model(tmp_path / "out" / "calibrated_model.onnx")
    assert {q.name for q in model.activation_quantizers if q.qtype == "int16"} == {"r1_QuantizeLinear"}
    assert lines[-1].endswith(" as ONNX Runtime deploys it)")  # 5 samples: all of them run as deployed too
    assert "activations in int16: conv2" in lines and not any(line.startswith("kept in float") for line in lines)

    code, out, err = run("calibrate", tiny_path, tmp_path / "x.npy", "-o", tmp_path / "kept", "--float-nodes", "[conv2]", "-m", "max")
    assert code == 0, err
    assert "kept in float: conv2" in out.splitlines()
    names = {q.name for q in ptqdebug.load_model(tmp_path / "kept" / "calibrated_model.onnx").quantizers}
    assert "r1_QuantizeLinear" not in names and "w2_QuantizeLinear" not in names and "w1_QuantizeLinear" in names


def test_calibrate_with_config_and_overrides(run, tiny_path: Path, tmp_path: Path) -> None:  # noqa: ANN001
    np.save(tmp_path / "x.npy", np.concatenate([s["x"] for s in make_samples(3)]))
    (tmp_path / "c.yaml").write_text(
        f"model_parameters:\n  onnx_model: {tiny_path.name}\n  working_dir: cfg_out\n"
        "calibration_parameters:\n  cal_data_dir: x.npy\n  calibration_type: kl\n"
    )
    code, out, err = run("calibrate", "--config", tmp_path / "c.yaml", "-m", "min-max", "--per-tensor-weights")
    assert code == 0, err
    assert "method: min-max" in out.splitlines()
    model = ptqdebug.load_model(tmp_path / "cfg_out" / "calibrated_model.onnx")
    assert all(q.granularity == "per-tensor" for q in model.weight_quantizers)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-m", "kll"], "calibration method 'kll' is not supported; expected one of default, max, percentile, kl, min-max (did you mean 'kl'?)"),
        (["--percentile", "2"], "percentile is 2.0; expected a fraction in (0, 1], e.g. 0.99995"),
        (["--layout", "CHW"], "argument --layout: invalid choice"),
    ],
)
def test_option_errors_are_one_line(run, tiny_path: Path, tmp_path: Path, argv: list[str], message: str) -> None:  # noqa: ANN001
    np.save(tmp_path / "x.npy", make_samples(1)[0]["x"])
    code, out, err = run("calibrate", tiny_path, tmp_path / "x.npy", "-o", tmp_path / "o", *argv)
    assert code == 2 and out == ""
    assert err.startswith("ptqdebug: error: ") and message in err and err.count("\n") == 1


def test_input_and_config_errors_are_one_line(run, tiny_path: Path, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "imgs").mkdir()
    code, _, err = run("calibrate", tiny_path, tmp_path / "imgs", "-o", tmp_path / "o")
    assert code == 2 and "no images found in" in err and err.count("\n") == 1
    (tmp_path / "imgs" / "a.png").write_bytes(b"junk")
    code, _, err = run("calibrate", tiny_path, tmp_path / "imgs", "-o", tmp_path / "o")
    assert code == 2 and "a.png' could not be read" in err and err.count("\n") == 1
    (tmp_path / "bad.yaml").write_text("calibration_parameters:\n  cal_data_dri: imgs\n")
    code, _, err = run("calibrate", "--config", tmp_path / "bad.yaml")
    assert code == 2 and "did you mean 'cal_data_dir'?" in err and err.count("\n") == 1
    code, _, err = run("calibrate", tiny_path, tmp_path / "imgs")
    assert code == 2 and "no output folder given; expected -o OUT_DIR" in err
