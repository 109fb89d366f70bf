"""Images in, model-ready arrays out: the preprocessing of the original toolchain, made explicit.

An image (any format Pillow reads: JPEG, PNG, BMP, ...) becomes one sample for a single-input model
with a 4-D image input, in this order:

1. read with Pillow, EXIF orientation applied, converted to 8-bit RGB;
2. resized to the model's height × width: ``crop`` (default) scales the short side to fit and cuts
   the centre, ``stretch`` resizes without keeping the aspect ratio, ``none`` requires the exact size
   (bilinear resampling);
3. converted to the model's colour, on 8-bit values as the original toolchain does:

   * ``rgb``; ``bgr`` (channels reversed);
   * ``gray``: ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601 luma), one channel;
   * ``yuv444``: BT.601 full range (JPEG YCbCr), ``U = 128 - 0.168736 R - 0.331264 G + 0.5 B``,
     ``V = 128 + 0.5 R - 0.418688 G - 0.081312 B``;

   gray and yuv444 values are rounded to integers and clipped to ``[0, 255]``, like an 8-bit image;
4. normalised per channel, ``(x - mean) * scale`` (the original's ``mean_value``/``scale_value``);
5. laid out ``NCHW`` or ``NHWC`` with a batch axis of 1, and cast to the model input's dtype
   (integer dtypes are rounded and clipped to their range).

What is written to ``calibration_data`` is the result of step 5: exactly what the model is fed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from ..model import TensorSpec

__all__ = [
    "COLORS", "LAYOUTS", "RESIZE_MODES", "ImagePlan", "ImagePreprocess", "convert_color", "parse_floats", "plan_for",
    "read_image", "resize_image",
]

COLORS = ("rgb", "bgr", "gray", "yuv444")
LAYOUTS = ("NCHW", "NHWC")
RESIZE_MODES = ("crop", "stretch", "none")

_YUV = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def parse_floats(value: object, what: str) -> tuple[float, ...] | None:
    """A number, a list of numbers, or the original's space-separated string ("123.7 116.3 103.5")."""
    if value is None:
        return None
    items: Sequence[object]
    if isinstance(value, str):
        items = value.replace(",", " ").replace(";", " ").split()
    elif isinstance(value, (int, float, np.number)):
        items = [value]
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    else:
        raise OptionError(f"{what} is a {type(value).__name__}; expected a number or a list of numbers, one per channel")
    try:
        out = tuple(float(v) for v in items)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(f"{what} {value!r} is not a list of numbers; expected comma-separated numbers, e.g. '123.675,116.28,103.53' (spaces work too)") from None
    if not out or not all(np.isfinite(out)):
        raise OptionError(f"{what} {value!r} is empty or not finite; expected one finite number per channel")
    return out


@dataclass(frozen=True)
class ImagePreprocess:
    """How images become model inputs (see module doc). ``None`` fields are read from the model.

    Attributes:
        color: ``rgb``, ``bgr``, ``gray`` or ``yuv444``; default ``rgb`` for 3 channels, ``gray`` for 1.
        layout: ``NCHW`` or ``NHWC``; default: the axis of the model input that holds the channels.
        mean: subtracted per channel (one value, or one per channel).
        scale: multiplied per channel after the mean (one value, or one per channel).
        resize: ``crop``, ``stretch`` or ``none``.
        input_shape: the 4-D input shape to use when the model's height/width are free.
        dtype: the array dtype; default (and the only accepted value) the model input's dtype.
    """

    color: str | None = None
    layout: str | None = None
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    resize: str = "crop"
    input_shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.color is not None and str(self.color).lower() not in COLORS:
            raise OptionError(f"color {self.color!r} is not supported; expected one of {', '.join(COLORS)}")
        if self.layout is not None and str(self.layout).upper() not in LAYOUTS:
            raise OptionError(f"layout {self.layout!r} is not supported; expected NCHW or NHWC")
        if str(self.resize).lower() not in RESIZE_MODES:
            raise OptionError(f"resize {self.resize!r} is not supported; expected one of {', '.join(RESIZE_MODES)}")
        object.__setattr__(self, "color", None if self.color is None else str(self.color).lower())
        object.__setattr__(self, "layout", None if self.layout is None else str(self.layout).upper())
        object.__setattr__(self, "resize", str(self.resize).lower())
        object.__setattr__(self, "mean", parse_floats(self.mean, "mean"))
        object.__setattr__(self, "scale", parse_floats(self.scale, "scale"))
        object.__setattr__(self, "input_shape", _shape(self.input_shape))
        if self.dtype is not None:
            try:
                object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
            except TypeError:
                raise OptionError(f"dtype {self.dtype!r} is not a numpy dtype; expected e.g. float32 or uint8") from None

    @classmethod
    def from_options(cls, value: ImagePreprocess | Mapping[str, object] | None) -> ImagePreprocess:
        """An :class:`ImagePreprocess` from itself, a dict of its fields, or None (all defaults)."""
        if value is None:
            return cls()
        if isinstance(value, ImagePreprocess):
            return value
        if not isinstance(value, Mapping):
            raise OptionError(f"preprocess is a {type(value).__name__}; expected an ImagePreprocess or a dict of its fields")
        known = {f.name for f in fields(cls)}
        unknown = [k for k in value if k not in known]
        if unknown:
            import difflib

            hint = difflib.get_close_matches(str(unknown[0]), known, n=1)
            raise OptionError(
                f"unknown preprocess option {unknown[0]!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else f"; expected {', '.join(sorted(known))}")
            )
        return cls(**value)  # type: ignore[arg-type]


def _shape(value: object) -> tuple[int, ...] | None:
    """``1x3x224x224``, ``[1, 3, 224, 224]`` or None."""
    if value is None:
        return None
    items = str(value).lower().replace("x", " ").replace(",", " ").split() if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    try:
        dims = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise OptionError(f"input_shape {value!r} is not a list of whole numbers; expected e.g. 1x3x224x224") from None
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise OptionError(f"input_shape {value!r} is not 4 positive dims; expected e.g. 1x3x224x224 (NCHW) or 1x224x224x3 (NHWC)")
    return dims


@dataclass(frozen=True)
class ImagePlan:
    """Preprocessing resolved against one model input: the sizes and values to apply."""

    name: str
    height: int
    width: int
    channels: int
    layout: str
    color: str
    mean: np.ndarray
    scale: np.ndarray
    resize: str
    dtype: np.dtype

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB ``uint8`` image ``(H, W, 3)`` → the model input array (batch of 1)."""
        img = resize_image(rgb, self.height, self.width, self.resize)
        x = convert_color(img, self.color) - self.mean
        x = x * self.scale
        x = x.transpose(2, 0, 1) if self.layout == "NCHW" else x
        return _cast(x[None], self.dtype)


def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.floor(x + 0.5), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x.astype(dtype))


def plan_for(spec: TensorSpec, pre: ImagePreprocess) -> ImagePlan:
    """Resolve ``pre`` against the model input ``spec``; a one-line error if images cannot feed it."""
    shape = pre.input_shape if pre.input_shape is not None else spec.shape
    desc = spec.describe()
    if shape is None or len(shape) != 4:
        rank = "unknown rank" if shape is None else f"{len(shape)}-D"
        raise DataError(
            f"model input {spec.name!r} is {desc} ({rank}); image preprocessing needs a 4-D input [N,C,H,W] or "
            "[N,H,W,C]: give .npy/.npz data or a loader script (file.py:function) instead of images"
        )
    if pre.input_shape is not None and spec.shape is not None and len(spec.shape) == 4:
        for given, model_dim in zip(pre.input_shape, spec.shape):
            if isinstance(model_dim, int) and model_dim > 0 and model_dim != given:
                raise OptionError(f"input_shape {'x'.join(map(str, pre.input_shape))} does not match model input {spec.name!r} {desc}")
    if spec.dtype.kind not in "fiu":
        raise DataError(f"model input {spec.name!r} is {desc}; images can feed only numeric inputs")
    if pre.dtype is not None and np.dtype(pre.dtype) != spec.dtype:
        raise OptionError(f"dtype {pre.dtype} differs from model input {spec.name!r} dtype {spec.dtype}; the data must match the model: leave dtype unset")
    want_c = None if pre.color is None else (1 if pre.color == "gray" else 3)
    layout = pre.layout or _guess_layout(spec.name, shape, want_c, desc)
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    channels, height, width, batch = shape[c_axis], shape[h_axis], shape[w_axis], shape[0]
    if not isinstance(height, int) or not isinstance(width, int) or height < 1 or width < 1:
        example = [1 if i == 0 else d if isinstance(d, int) and d > 0 else 224 for i, d in enumerate(shape)]
        raise DataError(
            f"model input {spec.name!r} is {desc} with a free height or width; give the size with input_shape "
            f"(command line: --input-shape {'x'.join(map(str, example))}; Python: "
            f"preprocess={{'input_shape': {tuple(example)}}})"
        )
    if isinstance(batch, int) and batch > 1:
        raise DataError(f"model input {spec.name!r} is {desc} with a fixed batch of {batch}; each image is one sample of batch 1: export the model with batch 1 or a free batch")
    if not isinstance(channels, int) or channels < 1:
        channels = want_c or 3
    color = pre.color or ("gray" if channels == 1 else "rgb")
    need = 1 if color == "gray" else 3
    if channels != need:
        raise DataError(
            f"model input {spec.name!r} is {desc} ({layout}, {channels} channels) but color {color} has {need}; "
            "set color (rgb/bgr/yuv444 for 3 channels, gray for 1) or layout"
        )
    mean = _per_channel(pre.mean, channels, "mean", 0.0)
    scale = _per_channel(pre.scale, channels, "scale", 1.0)
    return ImagePlan(spec.name, height, width, channels, layout, color, mean, scale, pre.resize, spec.dtype)


def _guess_layout(name: str, shape: Sequence[object], want_c: int | None, desc: str) -> str:
    options = (want_c,) if want_c else (3, 1)
    for c in options:
        if shape[1] == c:
            return "NCHW"
        if shape[3] == c:
            return "NHWC"
    raise DataError(
        f"cannot tell the channel axis of model input {name!r} {desc}: neither dim 1 nor dim 3 is "
        f"{' or '.join(map(str, options))}; set layout (NCHW or NHWC) and color"
    )


def _per_channel(values: tuple[float, ...] | None, channels: int, what: str, default: float) -> np.ndarray:
    if values is None:
        return np.full(channels, default, dtype=np.float64)
    if len(values) == 1:
        return np.full(channels, values[0], dtype=np.float64)
    if len(values) != channels:
        raise OptionError(f"{what} has {len(values)} values but the model input has {channels} channels; give 1 value (used for every channel) or one per channel ({channels} comma-separated values)")
    return np.asarray(values, dtype=np.float64)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``uint8`` RGB ``(H, W, 3)``, EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"image {str(path)!r} could not be read ({reason}); expected a JPEG, PNG or BMP image") from None


def resize_image(rgb: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize an RGB ``uint8`` image to ``height × width`` (``crop``, ``stretch`` or ``none``)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    if mode == "none":
        raise DataError(f"the image is {w}x{h} (width x height), the model takes {width}x{height}; resize it or use resize crop/stretch")
    im = Image.fromarray(rgb)
    if mode == "stretch":
        return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR))
    ratio = max(height / h, width / w)
    nh, nw = max(height, round(h * ratio)), max(width, round(w * ratio))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.asarray(im.crop((left, top, left + width, top + height)))


def convert_color(rgb: np.ndarray, color: str) -> np.ndarray:
    """RGB ``uint8`` ``(H, W, 3)`` → float64 ``(H, W, C)`` in ``color`` (module doc)."""
    x = np.asarray(rgb, dtype=np.float64)
    if color == "rgb":
        return x
    if color == "bgr":
        return x[..., ::-1].copy()
    if color == "gray":
        y = x @ _YUV[0]
        return np.clip(np.floor(y + 0.5), 0, 255)[..., None]
    if color == "yuv444":
        yuv = x @ _YUV.T + np.array([0.0, 128.0, 128.0])
        return np.clip(np.floor(yuv + 0.5), 0, 255)
    raise OptionError(f"color {color!r} is not supported; expected one of {', '.join(COLORS)}")
