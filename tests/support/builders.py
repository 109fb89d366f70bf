"""Float ONNX models built from numpy, and their QDQ versions made by ONNX Runtime.

The models are real architectures with random weights drawn off any quantization grid, so that
every calibration node loses information and a test that compares numbers can fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _GraphBuilder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}

    def name(self, op: str) -> str:
        i = self._count.get(op, 0)
        self._count[op] = i + 1
        return f"{op}_{i}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        name = self.name(op)
        outputs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w = self.rng.normal(0.0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        b = self.rng.normal(0.0, 0.05, (cout,)).astype(np.float32)
        idx = self._count.get("Conv", 0)
        (y,) = self.node(
            "Conv",
            [x, self.init(f"conv{idx}.weight", w), self.init(f"conv{idx}.bias", b)],
            pads=[k // 2] * 4,
            strides=[stride, stride],
            kernel_shape=[k, k],
        )
        return self.node("Relu", [y])[0] if relu else y

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], opset: int) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "model", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 9)
        onnx.checker.check_model(model)
        return model


def small_cnn(seed: int = 0, size: int = 16, channels: tuple[int, ...] = (8, 16), opset: int = 17) -> onnx.ModelProto:
    """Conv/Relu/MaxPool stages, a residual Add, global pooling and a Gemm classifier."""
    b = _GraphBuilder(seed)
    x, c = "input", 3
    for i, co in enumerate(channels):
        x = b.conv(x, c, co, 3)
        if i == len(channels) - 1:
            y = b.conv(x, co, co, 3, relu=False)
            x = b.node("Relu", b.node("Add", [x, y]))[0]
        x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])[0]
        c = co
    x = b.node("GlobalAveragePool", [x])[0]
    x = b.node("Flatten", [x])[0]
    w = b.init("fc.weight", b.rng.normal(0, 1 / np.sqrt(c), (c, 10)).astype(np.float32))
    bias = b.init("fc.bias", b.rng.normal(0, 0.05, (10,)).astype(np.float32))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="Gemm_0"))
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        opset,
    )


def resnet18(seed: int = 0, size: int = 224, width: int = 64, opset: int = 17) -> onnx.ModelProto:
    """A ResNet-18 layout (20 Conv, 8 residual blocks, Gemm head) with random weights."""
    b = _GraphBuilder(seed)
    x = b.conv("input", 3, width, 7, stride=2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])[0]
    c = width
    for stage, co in enumerate([width, width * 2, width * 4, width * 8]):
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            y = b.conv(x, c, co, 3, stride=stride)
            y = b.conv(y, co, co, 3, relu=False)
            shortcut = b.conv(x, c, co, 1, stride=stride, relu=False) if (stride != 1 or c != co) else x
            x = b.node("Relu", b.node("Add", [y, shortcut]))[0]
            c = co
    x = b.node("GlobalAveragePool", [x])[0]
    x = b.node("Flatten", [x])[0]
    w = b.init("fc.weight", b.rng.normal(0, 1 / np.sqrt(c), (c, 1000)).astype(np.float32))
    bias = b.init("fc.bias", b.rng.normal(0, 0.05, (1000,)).astype(np.float32))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="Gemm_0"))
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        opset,
    )


def image_samples(n: int, size: int, seed: int = 0, name: str = "input") -> list[dict[str, np.ndarray]]:
    """Smooth random images (low-frequency noise), one sample per dict, batch 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.normal(0.0, 1.0, (1, 3, max(size // 4, 1), max(size // 4, 1))).astype(np.float32)
        img = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)[:, :, :size, :size]
        img = img + rng.normal(0.0, 0.3, img.shape).astype(np.float32)
        out.append({name: np.ascontiguousarray(img, dtype=np.float32)})
    return out


class _Reader:
    def __init__(self, samples: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._it: Iterator[Mapping[str, np.ndarray]] = iter(list(samples))

    def get_next(self) -> Mapping[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_qdq(
    float_path: Path,
    qdq_path: Path,
    samples: list[dict[str, np.ndarray]],
    *,
    per_channel: bool = True,
    activation_type: str = "int8",
    weight_type: str = "int8",
    weight_pairs: bool = True,
    symmetric_activations: bool = False,
    keep_activations: bool = False,
    quantize_bias: bool = True,
) -> Path:
    """Quantize with ``onnxruntime.quantization.quantize_static`` in QDQ format (``quantize_bias``
    False: float biases, as NNCF writes them)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8, "int16": QuantType.QInt16, "uint16": QuantType.QUInt16}
    reader = _Reader(samples)
    CalibrationDataReader.register(_Reader)
    quantize_static(
        str(float_path),
        str(qdq_path),
        reader,  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=types[activation_type],
        weight_type=types[weight_type],
        extra_options={
            "AddQDQPairToWeight": weight_pairs,
            "ActivationSymmetric": symmetric_activations,
            "QDQKeepRemovableActivations": keep_activations,
            "QDQDisableWeightAdjustForInt32Bias": True,
            "QuantizeBias": quantize_bias,
        },
    )
    return qdq_path
