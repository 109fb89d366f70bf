"""The ``ptqdebug calibrate`` command: arguments and a YAML configuration → :func:`calibrate`.

Usage::

    ptqdebug calibrate FLOAT_MODEL INPUTS -o OUT_DIR [options]
    ptqdebug calibrate --config config.yaml [FLOAT_MODEL] [INPUTS] [-o OUT_DIR] [options]

With ``--config``, the configuration gives what the command line leaves out; an option given on
the command line wins.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli.args import names_value
from ..errors import OptionError
from .config import CalibrationConfig, load_config
from .core import METHODS, SELECT_SAMPLES, calibrate
from .preprocess import COLORS, LAYOUTS, RESIZE_MODES

__all__ = ["register", "run"]

_DESCRIPTION = (
    "Calibrate a float ONNX model: write OUT_DIR/calibrated_model.onnx (a QDQ model whose every calibration "
    "node can be switched off exactly) and OUT_DIR/calibration_data/<input>/<i>.npy (the preprocessed inputs), "
    "then print the method used and the float-vs-calibrated output cosine similarity."
)
_INPUTS_HELP = (
    "a folder of images (jpg/png/bmp), an .npy/.npz file, a folder of .npy files or a calibration_data folder, "
    "or a loader script file.py:function returning an iterable of dict[input name, ndarray]"
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``calibrate`` subcommand to the ``ptqdebug`` parser's subcommands."""
    p = sub.add_parser("calibrate", help="make a calibrated (QDQ) model and calibration data from a float model",
                       description=_DESCRIPTION)
    p.add_argument("float_model", nargs="?", metavar="FLOAT_MODEL", help="the float model (.onnx)")
    p.add_argument("inputs", nargs="?", metavar="INPUTS", help=_INPUTS_HELP)
    p.add_argument("-o", "--output", dest="out_dir", metavar="OUT_DIR", help="output folder (created if missing)")
    p.add_argument("-c", "--config", metavar="config.yaml", help="a YAML configuration in the original toolchain's layout")
    g = p.add_argument_group("calibration")
    g.add_argument("-m", "--method", metavar="METHOD", help=f"{', '.join(METHODS)} (default: default, which tries max, percentile and kl)")
    g.add_argument("--percentile", type=float, metavar="P", help="fraction of |x| kept by the percentile method (default 0.99995)")
    g.add_argument("--per-tensor-weights", dest="per_channel", action="store_const", const=False,
                   help="quantize weights per tensor (default: per output channel)")
    g.add_argument("--asymmetric", dest="activation_symmetric", action="store_const", const=False,
                   help="asymmetric activation ranges (default: symmetric, zero point 0)")
    g.add_argument("--int16-nodes", type=names_value("--int16-nodes"), metavar="LIST",
                   help="int16 activations for these calibration nodes, nodes (their inputs) or tensors: a,b or [a,b]")
    g.add_argument("--float-nodes", type=names_value("--float-nodes"), metavar="LIST",
                   help="keep these nodes in float (their calibration nodes cut out), e.g. what runall recommends: a,b or [a,b]")
    g.add_argument("--all-int16", dest="all_int16", action="store_const", const=True, help="int16 for every activation")
    g.add_argument("-d", "--data-num", dest="data_num", type=int, metavar="N", help="use only the first N samples")
    g.add_argument("--no-optimize", dest="optimize", action="store_const", const=False,
                   help="skip ONNX Runtime's quant_pre_process (BatchNorm folding, constant folding)")
    g.add_argument("--providers", metavar="LIST", help="ONNX Runtime execution providers, comma-separated (default: CPU)")
    i = p.add_argument_group("image preprocessing")
    i.add_argument("--color", choices=COLORS, help="color the model takes (default: rgb, or gray for 1 channel)")
    i.add_argument("--layout", choices=LAYOUTS, type=str.upper, help="default: read from the model input shape")
    i.add_argument("--mean", metavar="LIST", help="per-channel mean subtracted, e.g. '123.675,116.28,103.53'")
    i.add_argument("--scale", metavar="LIST", help="per-channel factor applied after the mean, e.g. '0.0171,0.0175,0.0174'")
    i.add_argument("--resize", choices=RESIZE_MODES, help="crop (default): fit the short side, cut the centre; stretch; none")
    i.add_argument("--input-shape", dest="input_shape", metavar="SHAPE", help="4-D input shape when the model's is free, e.g. 1x3x224x224")
    i.add_argument("--dtype", help="array dtype (default: the model input's)")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace, cfg: CalibrationConfig) -> dict[str, Any]:
    opts = dict(cfg.options)
    for key in ("method", "percentile", "per_channel", "activation_symmetric", "int16_nodes", "all_int16",
                "float_nodes", "data_num", "optimize", "providers"):
        value = getattr(args, key, None)
        if value is not None:
            opts[key] = value
    pre = dict(opts.get("preprocess") or {})
    for key in ("color", "layout", "mean", "scale", "resize", "input_shape", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            pre[key] = value
    if pre:
        opts["preprocess"] = pre
    return opts


def run(args: argparse.Namespace) -> int:
    """Run ``ptqdebug calibrate`` and print what was written, the method and the output cosine."""
    from ..cli.progress import progress_bar

    cfg = load_config(args.config) if args.config else CalibrationConfig()
    float_model = args.float_model or cfg.float_model
    inputs = args.inputs or cfg.inputs
    out_dir = args.out_dir or cfg.out_dir
    if not float_model:
        raise OptionError("no float model given; expected FLOAT_MODEL (or model_parameters.onnx_model in --config)")
    if not inputs:
        raise OptionError("no calibration inputs given; expected INPUTS (or calibration_parameters.cal_data_dir in --config)")
    if not out_dir:
        raise OptionError("no output folder given; expected -o OUT_DIR (or model_parameters.working_dir in --config)")
    with progress_bar("Calibrating") as progress:
        result = calibrate(float_model, inputs, out_dir, progress=progress, **_options(args, cfg))
    print(f"wrote {result.model_path}")
    if Path(str(inputs)).is_dir() and Path(str(inputs)).resolve() == Path(result.data_dir).resolve():
        print(f"read {result.data_dir} in place ({_samples(result.num_samples)})")
    else:
        print(f"wrote {result.data_dir} ({_samples(result.num_samples)})")
    if len(result.candidates) > 1:
        for name, score in result.candidates.items():
            first = min(result.num_samples, SELECT_SAMPLES)
            print(f"  {name:<10} output cosine {score:.6f} ({'the sample' if first == 1 else f'first {first} samples'})")
        print(f"Select {result.method} method.")
    else:
        print(f"method: {result.method}")
    for key, what in (("float_nodes", "kept in float"), ("int16_nodes", "activations in int16")):
        if result.options.get(key):
            print(f"{what}: {', '.join(result.options[key])}")
    if result.options.get("all_int16"):
        print("activations in int16: all")
    k, defined, deployed = result.deployment
    if k == result.num_samples:
        print(f"float vs calibrated output cosine similarity: {result.cosine:.6f} ({deployed:.6f} as ONNX Runtime deploys it)")
    else:
        print(f"float vs calibrated output cosine similarity: {result.cosine:.6f} (on the first {k} samples {defined:.6f}, "
              f"{deployed:.6f} as ONNX Runtime deploys it)")
    return 0


def _samples(n: int) -> str:
    return "1 sample" if n == 1 else f"{n} samples"
