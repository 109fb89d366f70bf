"""Which samples quantization hurts most: ``sample_sensitivity`` and ``select_sensitive_samples``
(``hmct``'s), each sample's score checked against a brute force (the file run whole by ONNX
Runtime, against the float model with every QDQ pair cut)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import ptqdebug as dbg
from ptqdebug.analyses.samples import SampleSensitivity
from ptqdebug.cli import main
from ptqdebug.metrics import METRICS, compare
from tests.support.oracle import oracle_from_file

MODEL = "pc_int8_pairs_keep.onnx"


def brute(path: Path, samples: list, metric: str = "cosine-similarity") -> list[float]:
    m = METRICS[metric]
    on = [q.name for q in dbg.load_model(path).quantizers]
    return [float(compare([m], oracle_from_file(path, [], s, ["logits"])["logits"],
                          oracle_from_file(path, on, s, ["logits"])["logits"])[0]) for s in samples]


@pytest.mark.parametrize("metric", ["cosine-similarity", "mse"])
def test_each_sample_scores_as_the_whole_file_does(cnn_dir: Path, samples: list, metric: str) -> None:
    path = cnn_dir / MODEL
    got = dbg.sample_sensitivity(path, cnn_dir / "calibration_data", metric=metric)
    want = brute(path, samples, metric)
    assert got.labels == tuple(str(i) for i in range(6)) and got.compared == ("logits",)
    np.testing.assert_allclose(got.scores, want, rtol=1e-6, atol=1e-9)
    # worst first: lowest cosine, highest mse; the mean is the calibrated model's sweep score
    assert list(got.order()) == sorted(range(6), key=lambda i: want[i] if metric == "cosine-similarity" else -want[i])
    ctx = dbg.open_context(path, cnn_dir / "calibration_data")
    from ptqdebug.analyses.sensitivity import score_configurations
    whole, _ = score_configurations(ctx, [ctx.model.calibrated_configuration], metrics=[METRICS[metric]],
                                    compare_at=ctx.model.outputs, data_num=None)
    assert float(np.mean(got.scores)) == pytest.approx(float(whole[0, 0]), rel=1e-12)
    assert SampleSensitivity.from_dict(json.loads(json.dumps(got.to_dict()))) == got


def test_non_finite_samples_come_first_and_ties_keep_data_order() -> None:
    r = SampleSensitivity("cosine-similarity", True, ("a", "b", "c", "d"), (0.9, math.nan, 0.8, 0.9), ("y",))
    assert r.order() == (1, 2, 0, 3) and r.worst(2) == (1, 2)
    assert SampleSensitivity.from_dict(json.loads(json.dumps(r.to_dict()))).order() == r.order()  # NaN survives JSON


def test_selected_samples_are_data_to_debug_on(cnn_dir: Path, samples: list) -> None:
    path = cnn_dir / MODEL
    ranking = dbg.sample_sensitivity(path, cnn_dir / "calibration_data")
    picked = dbg.select_sensitive_samples(path, cnn_dir / "calibration_data", num_sample=2)
    assert isinstance(picked, dbg.Dataset) and len(picked) == 2
    assert picked.labels == tuple(ranking.labels[i] for i in ranking.worst(2))
    np.testing.assert_array_equal(picked[0]["input"], samples[ranking.worst(1)[0]]["input"])
    # a function's default data_num=1 now takes the worst sample
    on_worst = dbg.sensitivity_analysis(path, picked, sensitive_nodes=[], save_dir=cnn_dir / "sa_worst")
    assert on_worst.baseline == pytest.approx(min(ranking.scores), rel=1e-12)


@pytest.mark.parametrize("kwargs,message", [
    ({"num_sample": 0}, r"num_sample is 0; expected a positive whole number"),
    ({"num_sample": 7}, r"num_sample is 7, but there are only 6 samples; select at most 6"),
    ({"num_sample": 2, "data_num": 1}, r"num_sample is 2, but data_num is 1; select at most 1"),
    ({"metric": ["cosine-similarity", "mse"]}, r"metric is \['cosine-similarity', 'mse'\]; expected one metric name"),
    ({"metric": "kl"}, r"unknown metric 'kl'"),
    ({"calibrated_model": None}, r"there is no calibrated model: pass calibrated_model"),
    ({"calibration_data": None}, r"there is no calibration data: pass calibration_data"),
])
def test_bad_options_are_one_line(cnn_dir: Path, kwargs: dict, message: str) -> None:
    args = {"calibrated_model": cnn_dir / MODEL, "calibration_data": cnn_dir / "calibration_data", **kwargs}
    with pytest.raises(dbg.OptionError, match=message):
        dbg.select_sensitive_samples(**args)
    picked = dbg.select_sensitive_samples(cnn_dir / MODEL, cnn_dir / "calibration_data", num_sample=2)
    with pytest.raises(dbg.OptionError, match=r"there are only 2 samples in the 2 selected of .*, but data_num is 3"):
        dbg.get_sensitivity_of_nodes(cnn_dir / MODEL, calibrated_data=picked, data_num=3)


def test_cli_writes_the_worst_samples_as_calibration_data(cnn_dir: Path, tmp_path: Path, samples: list,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = cnn_dir / MODEL
    assert main(["select-sensitive-samples", str(path), str(cnn_dir / "calibration_data"), "-n", "3", "-s", str(tmp_path / "bad")]) == 0
    out = capsys.readouterr().out
    ranking = dbg.sample_sensitivity(path, cnn_dir / "calibration_data")
    worst = ranking.worst(3)
    assert "the 3 worst of 6 samples" in out and f"debug on them: ptqdebug runall {path} {tmp_path / 'bad' / 'calibration_data'}" in out
    for rank, i in enumerate(worst):
        np.testing.assert_array_equal(np.load(tmp_path / "bad" / "calibration_data" / "input" / f"{rank}.npy"), samples[i]["input"])
    assert sorted(p.name for p in (tmp_path / "bad" / "calibration_data" / "input").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    saved = SampleSensitivity.from_dict(json.loads((tmp_path / "bad" / "sample_sensitivity.json").read_text()))
    assert saved == ranking
    assert main(["select-sensitive-samples", str(path), str(cnn_dir / "calibration_data"), "-n", "9"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("where,message", [
    ("parent", "would put the selected samples in place of the calibration data"),
    ("inside", "is inside the calibration data folder"),
    ("link", "is a symbolic link; ptqdebug replaces that folder, and would empty what it points to"),
    ("other-model", "holds data for input 'other', which this model does not have"),
    ("stray-file", "holds 'notes.txt', which is not calibration data written by ptqdebug"),
])
def test_cli_never_writes_over_data_it_did_not_write(cnn_dir: Path, tmp_path: Path, where: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Refused in one line, before any scoring, with every file left as it was."""
    import shutil

    data = tmp_path / "calibration_data"
    shutil.copytree(cnn_dir / "calibration_data", data)
    save = {"parent": tmp_path, "inside": data / "out"}.get(where, tmp_path / "save")
    if where == "link":
        (tmp_path / "save").mkdir()
        (tmp_path / "save" / "calibration_data").symlink_to(data)
        data = cnn_dir / "calibration_data"  # read elsewhere: the link points at the copy, which must survive
    elif where == "other-model":
        (tmp_path / "save" / "calibration_data" / "other").mkdir(parents=True)
        np.save(tmp_path / "save" / "calibration_data" / "other" / "0.npy", np.zeros(3))
    elif where == "stray-file":
        (tmp_path / "save" / "calibration_data").mkdir(parents=True)
        (tmp_path / "save" / "calibration_data" / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["select-sensitive-samples", str(cnn_dir / MODEL), str(data), "-n", "2", "-s", str(save)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "worst of" not in out  # (no table: nothing was scored)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_result_on_fewer_samples_than_the_data_points_to_the_worst(cnn_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sensitivity-analysis", str(cnn_dir / MODEL), str(cnn_dir / "calibration_data"), "-sd", str(cnn_dir / "sa_note")]) == 0
    err = capsys.readouterr().err
    assert "note: scored on the first sample of 6; --data_num all scores every one, and select-sensitive-samples finds the worst" in err
    assert main(["sensitivity-analysis", str(cnn_dir / MODEL), str(cnn_dir / "calibration_data"), "-d", "all",
                 "-sd", str(cnn_dir / "sa_note")]) == 0
    assert "note: scored on" not in capsys.readouterr().err
