"""The command line end to end, including every bad-input path (one line, exit status 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptqdebug.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sensitivity_table_and_files(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "get-sensitivity-of-nodes", cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data",
                         "-m", "['cosine-similarity','mse']", "-n", "activation", "-v", "-d", "2", "-s", tmp_path / "o")
    assert code == 0, err
    lines = out.splitlines()
    assert "node sensitivity" in lines[0]
    assert lines[1].split() == ["activation", "node", "threshold", "bit", "cosine-similarity", "mse"]
    data = json.loads((tmp_path / "o" / "sensitivity_of_activation.json").read_text())
    assert [line.split()[0] for line in lines[3:3 + len(data)]] == list(data)


def test_list_split_by_the_shell_and_bool_values(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `-m ['cosine-similarity', 'mse']` unquoted reaches us as two words
    code, out, err = run(capsys, "get-sensitivity-of-nodes", cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data",
                         "-m", "[cosine-similarity,", "mse]", "-v", "False")
    assert code == 0, err
    assert out.splitlines()[1].split() == ["node", "cosine-similarity", "mse"]


@pytest.mark.parametrize("argv", [["runall", "m.onnx", "d", "-v", "maybe"], ["plot_acc_error", "m.onnx", "d", "-a", "maybe"]])
def test_a_boolean_flag_followed_by_another_word(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)
    flag = argv[-2]
    assert code == 2 and err.count("\n") == 1
    command = {"runall": "runall", "plot_acc_error": "plot-acc-error"}[argv[0]]
    assert f"{flag} is true or false (bare {flag} means true), not 'maybe' (see `ptqdebug {command} --help`)" in err
    code, _, err = run(capsys, "runall", "m.onnx", "d", "stray")
    assert code == 2 and "unrecognized arguments: stray" in err


def test_an_unknown_flag_points_at_the_subcommands_help(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's top-level parser reports it, so it pointed at `ptqdebug --help`, which does not
    list runall's options (a migration trial typed runall -m, which is -nm there)."""
    code, _, err = run(capsys, "runall", "m.onnx", "d", "-m", "mse")
    assert code == 2 and err == "ptqdebug: error: unrecognized arguments: -m mse (see `ptqdebug runall --help`)\n"
    code, _, err = run(capsys, "get_sensitivity_of_nodes", "m.onnx", "d", "--nope")
    assert code == 2 and err.endswith("(see `ptqdebug get-sensitivity-of-nodes --help`)\n")


def test_plot_acc_error_takes_runalls_spelling_too(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """runall names these options -qn/-nqn, plot-acc-error -q/-nq: both spellings work there
    (-qn read as `-q n` and left a stray list)."""
    code, _, err = run(capsys, "plot-acc-error", cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data",
                       "-qn", "[Conv_0]", "-nqn", "[Gemm_0]", "-s", tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "non_quantize_node_accumulate_err_of_node_cosine-similarity.png",
        "quantize_node_accumulate_err_of_node_cosine-similarity.png"]


def test_interested_groups(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "get-sensitivity-of-nodes", cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data",
                         "-i", "[[Conv_0,Conv_1],[Gemm_0]]")
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()[3:]]
    assert sorted(names) == ["Conv_0+Conv_1", "Gemm_0"]


def test_info(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", cnn_dir / "pc_int8_stored.onnx")
    assert code == 0
    assert "weight calibration nodes (4)" in out and "fixed: weights stored as integers" in out
    # the output's calibration node: read by no node, and a node sweep candidate of its own
    assert "logits_QuantizeLinear  int8 per-tensor -> (no node reads it)" in out
    assert "calibration nodes no node owns, each a node sweep candidate of its own (1):\n  logits_QuantizeLinear" in out


def test_local_error_table_worst_first(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ptqdebug as dbg
    from ptqdebug.report.tables import shown

    model, data = cnn_dir / "pc_int8_pairs_keep.onnx", cnn_dir / "calibration_data"
    code, out, _ = run(capsys, "local-error", model, data, "-m", "['cosine-similarity','mse']", "-d", "2")
    assert code == 0
    lines = out.strip().splitlines()
    assert "local error" in lines[0] and lines[1].split() == ["node", "cosine-similarity", "mse"]
    rows = [ln.split() for ln in lines[3:]]
    want = dbg.local_errors(model, data, metrics="cosine-similarity", data_num=2).as_mapping()
    assert [r[0] for r in rows] == sorted(want, key=lambda n: want[n]["cosine-similarity"])
    assert [float(r[1]) for r in rows] == [shown(want[r[0]]["cosine-similarity"]) for r in rows]
    code, _, err = run(capsys, "local-error", model, data, "-n", dbg.load_model(model).quantizers[0].name)
    assert code == 2 and err.count("\n") == 1 and "not an ordinary node with calibration nodes" in err


def _data_with(tmp_path: Path, cnn_dir: Path, array: np.ndarray, folder: str = "input") -> Path:
    root = tmp_path / "cd"
    (root / folder).mkdir(parents=True)
    np.save(root / folder / "0.npy", array)
    return root


GOOD = np.zeros((1, 3, 16, 16), np.float32)


@pytest.mark.parametrize("case,message", [
    ("missing_folder", "does not exist"),
    ("input_mismatch", "has folders 'images'; the model inputs are 'input'"),
    ("wrong_shape", "shape \\[1, 3, 8, 8\\], the model expects float32\\[N, 3, 16, 16\\]"),
    ("wrong_dtype", "dtype float64, the model expects float32"),
    ("pickled", "pickled object array"),
    ("unknown_node", "'Conv_77' is not in the model"),
    ("unknown_metric", "unknown metric 'kl'"),
    ("not_calibrated", "no calibration nodes"),
    ("corrupted", "could not be read as ONNX"),
    ("bad_list", "unclosed"),
    ("bad_node_type", "invalid choice: 'tea'"),
    ("data_num", "there are only 6 samples"),
    ("weights_need_float_model", "--float-model"),
    ("save_dir_is_file", "is a file"),
    # -o is the output node here (the original's flag), the output path in calibrate and export
    ("output_folder", "'out/' is not in the model; .* \\(-o names the node to compare at, as in the original tool; the output folder is -s\\)$"),
    ("output_node", "'Conv_77' is not in the model; (?!.*output folder)"),
])
def test_bad_input_is_one_line_exit_2(case: str, message: str, cnn_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    model, data = cnn_dir / "pc_int8_pairs.onnx", cnn_dir / "calibration_data"
    extra: list[str] = []
    if case == "missing_folder":
        data = tmp_path / "nope"
    elif case == "input_mismatch":
        data = _data_with(tmp_path, cnn_dir, GOOD, "images")
    elif case == "wrong_shape":
        data = _data_with(tmp_path, cnn_dir, np.zeros((1, 3, 8, 8), np.float32))
    elif case == "wrong_dtype":
        data = _data_with(tmp_path, cnn_dir, GOOD.astype(np.float64))
    elif case == "pickled":
        data = _data_with(tmp_path, cnn_dir, GOOD)
        with open(data / "input" / "0.npy", "wb") as f:
            np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "unknown_node":
        extra = ["-i", "[Conv_77]"]
    elif case == "unknown_metric":
        extra = ["-m", "kl"]
    elif case == "not_calibrated":
        model = cnn_dir / "float.onnx"
    elif case == "corrupted":
        model = tmp_path / "c.onnx"
        model.write_bytes(b"\x08\x07garbage" * 10)
    elif case == "bad_list":
        extra = ["-i", "[[a,b]"]
    elif case == "bad_node_type":
        extra = ["-n", "tea"]
    elif case == "data_num":
        extra = ["-d", "7"]
    elif case == "weights_need_float_model":
        model = cnn_dir / "pc_int8_stored.onnx"
        extra = ["-n", "weight"]
    elif case in ("output_folder", "output_node"):
        extra = ["-o", "out/" if case == "output_folder" else "Conv_77"]
    elif case == "save_dir_is_file":
        (tmp_path / "f").write_text("x")
        extra = ["-s", str(tmp_path / "f")]
    code, out, err = run(capsys, "get-sensitivity-of-nodes", model, data, *extra)
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("ptqdebug: error: "), err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "Traceback" not in err


def test_module_entry_point_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ptqdebug", "get-sensitivity-of-nodes", str(tmp_path / "m.onnx"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("ptqdebug: error: calibrated model file") and "Traceback" not in proc.stderr


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["get-sensitivity-of-nodes", "--help"])
    assert exc.value.code == 0
    assert "--interested_nodes" in capsys.readouterr().out


def test_subcommands_take_the_python_spelling(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plot_acc_error as the manual sometimes writes it; the bare boolean flag still works there."""
    code = main(["plot_acc_error", str(cnn_dir / "pc_int8_pairs.onnx"), str(cnn_dir / "calibration_data"),
                 "-q", "['weight','activation']", "-a", "-s", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "average_weight_activation_quantized_separately_cosine-similarity.png").is_file()
    assert "at 'logits', output of 'logits_QuantizeLinear', the last of" in out  # the model output, after its QDQ pair
    assert main(["calibrated_model.onnx"]) == 2  # a file name is not mangled into a subcommand
    assert "invalid choice: 'calibrated_model.onnx'" in capsys.readouterr().err
    model, data = str(cnn_dir / "pc_int8_pairs.onnx"), str(cnn_dir / "calibration_data")
    assert main(["local_errors", model, data]) == 0 and "local error" in capsys.readouterr().out
    assert main(["export_model", model, "-o", str(tmp_path / "p.onnx"), "-f", "Conv_0"]) == 0


@pytest.mark.parametrize("command", ["runall", "get-sensitivity-of-nodes", "plot-acc-error"])
def test_data_before_the_model_is_said_in_one_line(command: str, cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plot_acc_error(data, model) takes the data first in Python; on the command line the model
    comes first in every command. Swapped, the message said only that the model is a folder."""
    extra = ["-q", "weight"] if command == "plot-acc-error" else []
    code, _, err = run(capsys, command, cnn_dir / "calibration_data", cnn_dir / "pc_int8_pairs.onnx", *extra)
    assert code == 2 and err.count("\n") == 1
    assert "the model comes first on the command line, then the calibration data" in err and "swap the two" in err
