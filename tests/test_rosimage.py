from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from uwstego.bags import typestore
from uwstego.rosimage import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    decode_raw,
    encode_jpeg,
)

H, W = 6, 8


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def raw_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: int = 0,
            kind: str = "rosbags") -> object:
    """An Image carrying ``pixels`` (already in the encoding's layout) with ``pad`` bytes/row."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1).view(np.uint8)
    data = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1).reshape(-1)
    fields = dict(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                  step=rows.shape[1] + pad)
    if kind == "rosbags":
        store = typestore()
        hdr = store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="c")
        msg = store.types["sensor_msgs/msg/Image"](header=hdr, data=data, **fields)
        # Round trip through CDR so `data` is the read-only view a bag reader hands out.
        cdr = store.serialize_cdr(msg, "sensor_msgs/msg/Image")
        return store.deserialize_cdr(cdr, "sensor_msgs/msg/Image")
    if kind == "rclpy":
        image_cls = pytest.importorskip("sensor_msgs.msg").Image
        msg = image_cls(**fields)
        msg.data = data.tobytes()
        return msg
    return SimpleNamespace(data=data.tobytes(), **fields)


def to_yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """Pack RGB as BT.601 limited-range 4:2:2 (even width), chroma averaged over pixel pairs."""
    r, g, b = np.moveaxis(rgb.astype(np.float64) / 255, -1, 0)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    planes = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": (cb[:, 0::2] + cb[:, 1::2]) / 2,
              "V": (cr[:, 0::2] + cr[:, 1::2]) / 2}
    names = ["U", "Y0", "V", "Y1"] if order == "uyvy" else ["Y0", "U", "Y1", "V"]
    packed = np.stack([planes[n] for n in names], axis=-1).reshape(rgb.shape[0], -1)
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8).reshape(rgb.shape[0], -1, 2)


def to_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Mosaic RGB with a 2x2 pattern such as 'rggb' (top-left, top-right, bottom-l, bottom-r)."""
    out = np.empty(rgb.shape[:2], np.uint8)
    channel = {"r": 0, "g": 1, "b": 2}
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
    return out


@pytest.mark.parametrize("kind", ["rosbags", "rclpy", "plain"])
@pytest.mark.parametrize("pad", [0, 5])
def test_exact_encodings_round_trip(rgb: np.ndarray, kind: str, pad: int) -> None:
    alpha = np.full((H, W, 1), 7, np.uint8)
    layouts = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], -1),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], -1),
    }
    for encoding, pixels in layouts.items():
        out = decode_raw(raw_msg(pixels, encoding, pad=pad, kind=kind))
        assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.writeable
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    grey = rgb[..., 1]
    out = decode_raw(raw_msg(grey, "mono8", pad=pad, kind=kind))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, -1))


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_scales_full_range(bigendian: int) -> None:
    values = np.array([[0, 257, 65535, 32896, 128, 129]], np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    out = decode_raw(raw_msg(stored, "mono16", pad=2, bigendian=bigendian, kind="plain"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128, 0, 1])
    assert (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"),
                                            ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")])
def test_yuv422_variants(encoding: str, order: str) -> None:
    # Flat colour pairs survive chroma subsampling, so the decode must match closely.
    flat = np.repeat(np.random.default_rng(1).integers(30, 220, (H, W // 2, 3),
                                                       dtype=np.uint8), 2, axis=1)
    out = decode_raw(raw_msg(to_yuv422(flat, order), encoding, pad=4, kind="plain"))
    assert np.abs(out.astype(int) - flat).max() <= 3


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns(pattern: str) -> None:
    colour = np.array([200, 120, 40], np.uint8)
    flat = np.broadcast_to(colour, (H, W, 3)).copy()
    out = decode_raw(raw_msg(to_bayer(flat, pattern), f"bayer_{pattern}8", kind="plain"))
    # Demosaicing a flat field returns the field (borders included) for the right pattern only.
    np.testing.assert_array_equal(out[2:-2, 2:-2], flat[2:-2, 2:-2])


def test_every_supported_encoding_is_tested() -> None:
    tested = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "uyvy",
              "yuv422_yuy2", "yuyv", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
              "bayer_grbg8"}
    assert set(SUPPORTED_ENCODINGS) == tested


@pytest.mark.parametrize("change,needle", [
    (dict(encoding="32FC1"), "unsupported image encoding"),
    (dict(step=W * 3 - 1), "smaller than width"),
    (dict(height=H + 1), "truncated"),
    (dict(height=H - 1), "expected"),
    (dict(width=0), "empty"),
])
def test_raw_errors_name_the_problem(rgb: np.ndarray, change: dict, needle: str) -> None:
    msg = raw_msg(rgb, "rgb8", kind="plain")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageDecodeError, match=needle):
        decode_raw(msg)


def test_raw_truncated_data(rgb: np.ndarray) -> None:
    msg = raw_msg(rgb, "rgb8", kind="plain")
    msg.data = msg.data[:-10]
    with pytest.raises(ImageDecodeError, match="truncated rgb8 image"):
        decode_raw(msg)


def test_odd_width_yuv_rejected() -> None:
    msg = SimpleNamespace(height=2, width=3, encoding="yuv422", step=6, is_bigendian=0,
                          data=bytes(12))
    with pytest.raises(ImageDecodeError, match="even width"):
        decode_raw(msg)


def test_compressed_jpeg_and_png(rgb: np.ndarray) -> None:
    smooth = cv2.GaussianBlur(cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_CUBIC), (5, 5), 2)
    jpeg = SimpleNamespace(format="jpeg", data=encode_jpeg(smooth, quality=95).tobytes())
    out = decode_image(jpeg)
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).mean() < 3
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_compressed(SimpleNamespace(format="png", data=png)), rgb)
    grey = encode_jpeg(smooth[..., 0], quality=95)
    assert decode_compressed(SimpleNamespace(format="mono8; jpeg", data=grey)).shape == (48, 64, 3)


def test_compressed_from_rclpy(rgb: np.ndarray) -> None:
    msg_cls = pytest.importorskip("sensor_msgs.msg").CompressedImage
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = msg_cls(format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(decode_image(msg), rgb)


def test_compressed_errors(rgb: np.ndarray) -> None:
    data = encode_jpeg(rgb).tobytes()
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):
        decode_compressed(SimpleNamespace(format="jpeg", data=data[: len(data) // 2]))
    with pytest.raises(ImageDecodeError, match="corrupt"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b"\x00not an image" * 10))
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_compressed(SimpleNamespace(format="jpeg", data=b""))
    with pytest.raises(ImageDecodeError, match="depth"):
        decode_compressed(SimpleNamespace(format="16UC1; compressedDepth", data=data))
    with pytest.raises(ImageDecodeError, match="neither"):
        decode_image(SimpleNamespace(data=data))


def test_encode_jpeg_rejects_bad_input(rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(rgb, quality=0)
    with pytest.raises(ValueError, match="HxWx3"):
        encode_jpeg(rgb.astype(np.float32))
