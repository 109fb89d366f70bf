"""The YAML configuration: the documented example, the mapping to calibrate(), and typos."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import ptqdebug
from ptqdebug.calibration import calibrate
from ptqdebug.calibration.config import _USED, load_config
from ptqdebug.errors import OptionError
from tests.calibration.models import tiny_cnn

DOC = Path(__file__).resolve().parents[2] / "docs" / "calibration.md"


def doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    return re.search(r"```yaml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


def test_documented_example_has_every_key_and_loads(tmp_path: Path) -> None:
    text = doc_example()
    for group, keys in _USED.items():
        assert f"{group}:" in text
        for key in keys:
            assert re.search(rf"^\s+{key}:", text, re.M), f"{group}.{key} is not in the documented example"
    (tmp_path / "config.yaml").write_text(text)
    cfg = load_config(tmp_path / "config.yaml")
    assert cfg.float_model == str(tmp_path / "float_model.onnx")
    assert cfg.inputs == str(tmp_path / "calibration_images")
    assert cfg.out_dir == str(tmp_path / "model_output")
    o = cfg.options
    assert o["method"] == "default" and o["percentile"] == 0.99995 and o["per_channel"] is True
    assert o["activation_symmetric"] is True and o["data_num"] == 100 and o["all_int16"] is False
    assert o["optimize"] is True and o["model_name"] == "resnet_calibrated_model.onnx"
    assert o["int16_nodes"] == ["relu3", "/layer4/Add_output_0_QuantizeLinear", "conv1"]
    assert o["float_nodes"] == ["/head/Gemm", "fc"]  # run_on_cpu, then node_info ON: CPU
    pre = o["preprocess"]
    assert pre["color"] == "bgr" and pre["layout"] == "NCHW" and pre["resize"] == "crop"
    assert pre["mean"] == "103.94 116.78 123.68" and pre["scale"] == [pytest.approx(1 / 58.8)]


def test_config_drives_calibrate_with_images(tmp_path: Path) -> None:
    onnx.save(tiny_cnn(), str(tmp_path / "tiny.onnx"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(imgs / f"{i}.jpg")
    (tmp_path / "cfg.yaml").write_text(
        "model_parameters:\n  onnx_model: tiny.onnx\n  working_dir: out\n  output_model_file_prefix: tiny\n"
        "  march: bayes-e\ninput_parameters:\n  input_type_train: yuv444\n  input_type_rt: nv12\n"
        "  norm_type: data_mean_and_scale\n  mean_value: 128 128 128\n  scale_value: 0.0078125\n"
        "calibration_parameters:\n  cal_data_dir: ./imgs\n  calibration_type: max\n  max_percentile: 0.999\n"
        "  optimization: [asymmetric]\ncompiler_parameters:\n  optimize_level: O3\n"
    )
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.options["method"] == "percentile" and cfg.options["activation_symmetric"] is False
    r = calibrate(cfg.float_model, cfg.inputs, cfg.out_dir, **cfg.options)
    assert Path(r.model_path) == tmp_path / "out" / "tiny_calibrated_model.onnx"
    assert r.method == "percentile" and r.num_samples == 3
    x = np.load(tmp_path / "out" / "calibration_data" / "x" / "0.npy")
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    assert ptqdebug.load_model(r.model_path).notes == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calibration_parameters:\n  calibraton_type: kl\n",
         r"unknown key 'calibraton_type' in calibration_parameters of '.*cfg\.yaml'; did you mean 'calibration_type'\?"),
        ("calibraton_parameters:\n  calibration_type: kl\n", r"unknown group 'calibraton_parameters' .*did you mean 'calibration_parameters'\?"),
        ("model_parameters: [a, b]\n", r"model_parameters in .* is a list; expected key: value lines"),
        ("model_parameters:\n  onnx_model: a\n   bad: indent\n", r"is not valid YAML at line \d+"),
        ("- just\n- a list\n", r"holds a list; expected groups"),
        ("calibration_parameters:\n  per_channel: true\n", r"per_channel: true .*per-channel activation calibration"),
        ("calibration_parameters:\n  set_all_nodes_int16: maybe\n", r"set_all_nodes_int16 in .* is 'maybe'; expected true or false"),
        ("input_parameters:\n  norm_type: data_std\n", r"norm_type 'data_std' .* is not supported"),
        ("input_parameters:\n  mean_value: 1 2 3;4 5 6\n", r"mean_value .* lists several inputs"),
        ("model_parameters:\n  node_info:\n    conv1: {InputTyp: int16}\n", r"node_info 'conv1' .* has 'InputTyp'"),
    ],
)
def test_config_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cfg.yaml").write_text(text)
    with pytest.raises(OptionError, match=message) as info:
        load_config(tmp_path / "cfg.yaml")
    assert "\n" not in str(info.value)


def test_run_on_cpu_and_an_unquoted_on_key_mean_float_nodes(tmp_path: Path) -> None:
    """YAML 1.1 reads a bare ``ON`` key as true; the original's configurations write it either way."""
    (tmp_path / "cfg.yaml").write_text("model_parameters:\n  node_info:\n    fc: {ON: CPU}\n    conv: {ON: BPU}\n"
                                       "calibration_parameters:\n  run_on_cpu: head1;head2\n")
    assert load_config(tmp_path / "cfg.yaml").options["float_nodes"] == ["head1", "head2", "fc"]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    cfg = load_config(tmp_path / "empty.yaml")
    assert cfg.float_model is None and dict(cfg.options) == {}
