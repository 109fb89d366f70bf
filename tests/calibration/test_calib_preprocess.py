"""Image preprocessing: colour conversions on known pixels, layouts, normalisation, sizes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptqdebug.calibration.preprocess import ImagePreprocess, convert_color, plan_for, read_image, resize_image
from ptqdebug.errors import DataError, OptionError
from ptqdebug.model import TensorSpec

RED, GREEN, BLUE, WHITE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (128, 128, 128)


def pixels(*colors: tuple[int, int, int]) -> np.ndarray:
    return np.array([colors], dtype=np.uint8)  # (1, n, 3)


def test_yuv444_of_known_pixels() -> None:
    yuv = convert_color(pixels(RED, GREEN, BLUE, WHITE, GREY), "yuv444")[0]
    # BT.601 full range: Y = .299R+.587G+.114B, U = 128-.168736R-.331264G+.5B, V = 128+.5R-.418688G-.081312B
    np.testing.assert_array_equal(yuv, [[76, 85, 255], [150, 44, 21], [29, 255, 107], [255, 128, 128], [128, 128, 128]])


def test_yuv444_and_gray_agree_with_pillow() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ours = convert_color(img, "yuv444")
    pillow = np.asarray(Image.fromarray(img).convert("YCbCr"), dtype=np.float64)
    assert np.abs(ours - pillow).max() <= 1  # Pillow uses fixed-point arithmetic
    gray = convert_color(img, "gray")
    assert gray.shape == (16, 16, 1)
    assert np.abs(gray[..., 0] - np.asarray(Image.fromarray(img).convert("L"), dtype=np.float64)).max() <= 1


def test_bgr_gray_rgb_of_known_pixels() -> None:
    px = pixels(RED, (10, 20, 30))
    np.testing.assert_array_equal(convert_color(px, "bgr")[0], [[0, 0, 255], [30, 20, 10]])
    np.testing.assert_array_equal(convert_color(px, "rgb")[0], [[255, 0, 0], [10, 20, 30]])
    np.testing.assert_array_equal(convert_color(px, "gray")[0, :, 0], [76, 18])  # .299*10+.587*20+.114*30 = 18.2


def test_plan_nchw_mean_scale_and_dtype() -> None:
    spec = TensorSpec("img", np.dtype(np.float32), ("N", 3, 2, 2))
    plan = plan_for(spec, ImagePreprocess(color="bgr", mean="1 2 3", scale=[0.5, 0.25, 2.0]))
    assert (plan.layout, plan.height, plan.width) == ("NCHW", 2, 2)
    img = np.zeros((2, 2, 3), np.uint8)
    img[...] = (10, 20, 30)
    out = plan(img)
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [(30 - 1) * 0.5, (20 - 2) * 0.25, (10 - 3) * 2.0])


def test_plan_nhwc_gray_uint8() -> None:
    spec = TensorSpec("img", np.dtype(np.uint8), (1, 4, 4, 1))
    plan = plan_for(spec, ImagePreprocess(mean=100.0, scale=2.0))
    assert (plan.layout, plan.color) == ("NHWC", "gray")
    out = plan(np.full((4, 4, 3), 255, np.uint8))
    assert out.shape == (1, 4, 4, 1) and out.dtype == np.uint8
    assert out.max() == 255  # (255 - 100) * 2 = 310, clipped to the dtype


def test_resize_crop_keeps_the_centre_and_stretch_fills() -> None:
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 5:15] = 200  # a bright centre band, dark sides
    crop = resize_image(img, 5, 5, "crop")
    assert crop.shape == (5, 5, 3) and crop[:, 1:-1].min() > 150 and crop.mean() > 150
    stretch = resize_image(img, 5, 5, "stretch")
    assert stretch.shape == (5, 5, 3) and stretch[:, 0].max() < 50
    with pytest.raises(DataError, match="20x10"):
        resize_image(img, 5, 5, "none")


def test_read_image_round_trip(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr[..., 0]).save(tmp_path / "g.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), arr)
    gray = read_image(tmp_path / "g.bmp")
    assert gray.shape == (6, 7, 3) and (gray[..., 0] == arr[..., 0]).all()
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"image .*bad\.jpg' could not be read .*expected a JPEG, PNG or BMP"):
        read_image(tmp_path / "bad.jpg")


@pytest.mark.parametrize(
    ("shape", "pre", "message"),
    [
        (("N", 128), {}, r"is float32\[N, 128\] \(2-D\); image preprocessing needs a 4-D input"),
        (("N", 3, None, None), {}, r"free height or width; give the size with input_shape"),
        ((4, 3, 8, 8), {}, r"fixed batch of 4"),
        (("N", 5, 8, 8), {}, r"cannot tell the channel axis"),
        (("N", 3, 8, 8), {"color": "gray"}, r"cannot tell the channel axis"),
        (("N", 3, 8, 8), {"layout": "NHWC"}, r"color rgb has 3"),
    ],
)
def test_plan_errors_are_one_line(shape: tuple[object, ...], pre: dict[str, object], message: str) -> None:
    spec = TensorSpec("img", np.dtype(np.float32), shape)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message) as info:
        plan_for(spec, ImagePreprocess(**pre))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_input_shape_gives_free_sizes() -> None:
    spec = TensorSpec("img", np.dtype(np.float32), ("N", 3, None, None))
    plan = plan_for(spec, ImagePreprocess(input_shape="1x3x6x4"))
    assert (plan.height, plan.width) == (6, 4)
    with pytest.raises(OptionError, match="does not match"):
        plan_for(TensorSpec("img", np.dtype(np.float32), ("N", 3, 8, 8)), ImagePreprocess(input_shape=[1, 3, 6, 4]))


def test_option_errors() -> None:
    with pytest.raises(OptionError, match="did you mean 'scale'"):
        ImagePreprocess.from_options({"scal": 1.0})
    with pytest.raises(OptionError, match="color 'hsv' is not supported"):
        ImagePreprocess(color="hsv")
    with pytest.raises(OptionError, match="not a list of numbers"):
        ImagePreprocess(mean="1 two 3")
    with pytest.raises(OptionError, match="4 positive dims"):
        ImagePreprocess(input_shape="3x224x224")
    with pytest.raises(OptionError, match="has 2 values but the model input has 3 channels"):
        plan_for(TensorSpec("img", np.dtype(np.float32), (1, 3, 4, 4)), ImagePreprocess(mean=[1, 2]))
    with pytest.raises(OptionError, match="dtype uint8 differs"):
        plan_for(TensorSpec("img", np.dtype(np.float32), (1, 3, 4, 4)), ImagePreprocess(dtype="uint8"))
    assert ImagePreprocess.from_options(None) == ImagePreprocess()
    assert ImagePreprocess.from_options({"layout": "nhwc"}).layout == "NHWC"
