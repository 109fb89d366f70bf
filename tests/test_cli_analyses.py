"""The original article's command lines work verbatim (hmct-debugger → ptqdebug), through a real shell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

import ptqdebug as dbg
from ptqdebug.report.tables import shown
from tests.support.horizon import hz_twin

ARTICLE = [
    "ptqdebug runall calibrated_model.onnx calibration_data",
    "ptqdebug plot-acc-error calibrated_model.onnx calibration_data -q ['weight', 'activation']",
    "ptqdebug plot-acc-error calibrated_model.onnx calibration_data -q ['weight','activation']",
    "ptqdebug get-sensitivity-of-nodes calibrated_model.onnx calibration_data -m ['cosine-similarity','mse']",
    "ptqdebug plot-distribution calibrated_model.onnx calibration_data -n ['317_HzCalibration','471_HzCalibration','Conv_2']",
    "ptqdebug get-channelwise-data-distribution calibrated_model.onnx calibration_data -n ['317_HzCalibration']",
    "ptqdebug plot-acc-error calibrated_model.onnx calibration_data -q [['Conv_2'], ['Conv_2', 'Conv_90']]",
    "ptqdebug plot-acc-error calibrated_model.onnx calibration_data -nq ['Conv_2', 'Conv_90']",
    "ptqdebug sensitivity-analysis calibrated_model.onnx calibration_data -p 0.9999999 -sd debug_result/",
    "ptqdebug get-calibration-nodes-stat-info calibrated_model.onnx calibration_data -v True",
]


@pytest.fixture(scope="module")
def workdir(cnn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HzCalibration model with the article's node names, and its calibration_data folder."""
    d = tmp_path_factory.mktemp("article")
    model, names = hz_twin(onnx.load(cnn_dir / "pc_int8_keep_sym.onnx"))
    rename = {}
    acts = [n for n in model.graph.node if n.op_type == "HzCalibration" and n.input[0] not in {i.name for i in model.graph.initializer}]
    weights = [n for n in model.graph.node if n.op_type == "HzCalibration" and n not in acts]
    rename[acts[1].name] = "317_HzCalibration"
    rename[weights[1].name] = "471_HzCalibration"
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    rename.update({c.name: f"conv{i}" for i, c in enumerate(convs)})
    rename[convs[0].name], rename[convs[1].name] = "Conv_2", "Conv_90"
    for n in model.graph.node:
        n.name = rename.get(n.name, n.name)
    onnx.save(model, d / "calibrated_model.onnx")
    shutil.copytree(cnn_dir / "calibration_data", d / "calibration_data")
    return d


def _shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "ptqdebug"
    env_cmd = cmd.replace("ptqdebug ", f"{exe} ", 1)
    return subprocess.run(env_cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("cmd", ARTICLE)
def test_article_command_lines(cmd: str, workdir: Path) -> None:
    proc = _shell(cmd, workdir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_runall_tree_report_and_json(workdir: Path) -> None:
    proc = _shell("ptqdebug runall calibrated_model.onnx calibration_data -s out/", workdir)
    assert proc.returncode == 0, proc.stderr
    out = workdir / "out"
    for rel in ("node_sensitivity/sensitivity_of_weight.log", "node_sensitivity/sensitivity_of_activation.log",
                "accumulate_error/weight_activation_quantized_separately_cosine-similarity.png",
                "sensitivity_analysis/partial_quantization.png", "results.json", "index.html"):
        assert (out / rel).is_file(), rel
    assert list((out / "data_distribution").glob("activation_*.png")) and list((out / "data_distribution").glob("weight_*.png"))
    assert list((out / "channelwise_distribution").glob("*_boxplot.png"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["sensitivity"]) == {"weight", "activation", "node"}
    assert all((out / f).is_file() for f in results["files"])
    assert "most sensitive weight nodes" in proc.stdout and "report:" in proc.stdout
    # the closing lines show scores to 6 decimals, as the verdict and the demo do (the tables keep the original's 5)
    worst = results["sensitivity"]["weight"]["entries"][0]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("most sensitive weight nodes"))
    assert f"{worst['name']} ({shown(worst['scores']['cosine-similarity'], 'cosine-similarity', 6)})" in line


def test_plot_acc_error_writes_the_original_file_names(workdir: Path) -> None:
    for cmd, name in [
        ("-q ['weight','activation']", "weight_activation_quantized_separately_cosine-similarity.png"),
        ("-q weight -a", "average_weight_quantized_cosine-similarity.png"),
        ("-q ['Conv_2','Conv_90'] -m mse", "quantize_node_accumulate_err_of_node_mse.png"),
        ("-nq [['Conv_2']]", "non_quantize_node_accumulate_err_of_partial_qmodel_cosine-similarity.png"),
    ]:
        proc = _shell(f"ptqdebug plot-acc-error calibrated_model.onnx calibration_data {cmd} -s acc/", workdir)
        assert proc.returncode == 0, proc.stderr
        assert (workdir / "acc" / name).is_file(), (cmd, sorted(p.name for p in (workdir / "acc").iterdir()))


def test_plot_acc_error_averages_over_the_samples_asked_for(workdir: Path) -> None:
    """-d N (beyond the original, which draws one sample): the printed last points are the API's
    means over N samples."""
    import ptqdebug as dbg

    proc = _shell("ptqdebug plot-acc-error calibrated_model.onnx calibration_data -q weight -d 3 -s acc3/", workdir)
    assert proc.returncode == 0, proc.stderr
    (result,) = dbg.plot_acc_error(workdir / "calibration_data", workdir / "calibrated_model.onnx", "weight",
                                   save_dir=workdir / "acc3api", data_num=3)
    assert result.samples == 3
    for curve in result.curves:
        assert f"  {curve.label}: {curve.values[-1]:.6g}" in proc.stdout


def test_distribution_file_names(workdir: Path) -> None:
    proc = _shell("ptqdebug plot-distribution calibrated_model.onnx calibration_data -n [317_HzCalibration,471_HzCalibration,Conv_2] -s dist", workdir)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (workdir / "dist").iterdir())
    assert "activation_317_HzCalibration.png" in names and "weight_471_HzCalibration.png" in names
    assert any(n.startswith("node_output_:") and n.endswith("_of_Conv_2.png") for n in names)


@pytest.mark.parametrize("cmd,message", [
    ("plot-acc-error calibrated_model.onnx calibration_data", "both empty"),
    ("plot-acc-error calibrated_model.onnx calibration_data -nq [weight]", "cannot be 'weight'"),
    ("plot-distribution calibrated_model.onnx calibration_data -n [nope]", "'nope' is not in the model"),
    ("plot-distribution calibrated_model.onnx calibration_data", "the following arguments are required: -n/--nodes_list"),
    ("get-channelwise-data-distribution calibrated_model.onnx calibration_data -n [Conv_2] -a 9", "out of range"),
    ("runall calibrated_model.onnx calibration_data -nt [tae]", "node_type"),
    ("runall calibrated_model.onnx calibration_data -am kl", "unknown metric 'kl'"),
    ("sensitivity-analysis calibrated_model.onnx calibration_data -sn [Conv_404]", "'Conv_404' is not in the model"),
])
def test_bad_options_one_line(cmd: str, message: str, workdir: Path) -> None:
    proc = _shell(f"ptqdebug {cmd}", workdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ptqdebug: error:") and message in lines[0], proc.stderr


def test_runall_says_where_a_sweep_compared(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With -o the weight and activation sweeps compare there, partial quantization's node sweep at
    the model outputs: each printed ranking says where it compared when not at the outputs."""
    from ptqdebug.cli import main

    assert main(["runall", str(cnn_dir / "pc_int8_pairs_keep.onnx"), str(cnn_dir / "calibration_data"), "-s",
                 str(tmp_path / "d"), "-o", "Conv_1", "--no-report"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line.startswith("most sensitive")}
    assert set(lines) == {"most sensitive weight nodes (compared at Conv_1_out)",
                          "most sensitive activation nodes (compared at Conv_1_out)",
                          "most sensitive nodes (compared at the model outputs)"}


def test_runall_verbose_prints_its_closing_lines_once(cnn_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """-v True shows the tables as they come; the closing lines (most sensitive nodes, what was
    written) come once, from the command line, not also from the API's log."""
    import logging

    from ptqdebug.cli import main

    with caplog.at_level(logging.INFO, logger="ptqdebug"):
        assert main(["runall", str(cnn_dir / "pc_int8_pairs_keep.onnx"), str(cnn_dir / "calibration_data"), "-s",
                     str(tmp_path / "d"), "-v", "True", "--no-report"]) == 0
    out, err = capsys.readouterr()
    shown = out + err + caplog.text
    assert "node sensitivity" in shown  # the verbose tables
    assert shown.count("most sensitive weight nodes") == 1 and shown.count("wrote ") == 1
    assert "node nodes" not in shown
    # from Python, the API says them itself (once), and the command line left its logger as it was
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ptqdebug"):
        dbg.runall(str(cnn_dir / "pc_int8_pairs_keep.onnx"), str(cnn_dir / "calibration_data"), tmp_path / "api",
                   node_type="node", report=False)
    assert caplog.text.count("most sensitive nodes: ") == 1 and "wrote " in caplog.text
