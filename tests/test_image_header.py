"""Declared sizes read from real encoder output, and the decoder's cap and kinds built on them."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tests.support.hostile import jpeg_declaring, png_declaring
from uwstego.image_header import HeaderError, ImageHeader, read_header
from uwstego.image_size import Size
from uwstego.rosimage import (
    DECODE_ERROR_KINDS,
    ImageDecodeError,
    compressed_header,
    decode_compressed,
    decode_image,
    encode_jpeg,
    reduction_for,
)

W, H = 64, 48


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    base = np.random.default_rng(3).integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return cv2.resize(base, (W, H), interpolation=cv2.INTER_LINEAR)


def encoded(bgr: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, bgr, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(("ext", "params", "fmt"), [
    (".jpg", (), "jpeg"),
    (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "jpeg"),
    (".png", (), "png"),
    (".bmp", (), "bmp"),
    (".tiff", (), "tiff"),
])
def test_declared_size_of_real_files(bgr, ext, params, fmt):
    assert read_header(encoded(bgr, ext, *params)) == ImageHeader(fmt, W, H)


def test_jpeg_frame_header_after_large_app_segments(bgr):
    jpeg = encoded(bgr, ".jpg")
    # An EXIF-like APP1 segment and fill bytes before the frame header must be skipped.
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 60000) + bytes(60000)
    assert read_header(jpeg[:2] + b"\xff\xff" + app1 + jpeg[2:]).width == W


@pytest.mark.parametrize(("data", "kind"), [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated"),
    (b"\xff\xd8\xff\xda\x00\x08" + bytes(8), "corrupt"),  # scan before any frame header
    (b"\xff\xd8\x00\x00", "corrupt"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
    (b"\x89PNG\r\n\x1a\n" + bytes(4) + b"IDAT" + bytes(12), "corrupt"),
    (b"II*\x00\xff\xff\x00\x00", "truncated"),
])
def test_broken_headers_are_classified(data, kind):
    with pytest.raises(HeaderError) as info:
        read_header(data)
    assert info.value.kind == kind


def test_unknown_formats_have_no_header():
    assert read_header(b"GIF89a" + bytes(20)) is None


def test_zero_size_is_refused(bgr):
    with pytest.raises(HeaderError, match="empty size"):
        read_header(jpeg_declaring(encoded(bgr, ".jpg"), 0, 10))


def _kind(fmt: str, data: bytes, **kwargs) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(SimpleNamespace(format=fmt, data=data), **kwargs)
    assert info.value.kind in DECODE_ERROR_KINDS and "\n" not in str(info.value)
    return info.value.kind


def test_declared_size_bombs_are_refused_before_decoding(bgr):
    jpeg, png = encoded(bgr, ".jpg"), encoded(bgr, ".png")
    assert _kind("jpeg", jpeg_declaring(jpeg, 20000, 20000)) == "too_large"
    assert _kind("png", png_declaring(png, 50000, 50000)) == "too_large"
    # The cap is the caller's: the frame itself is fine under a larger one.
    assert _kind("jpeg", jpeg, max_pixels=W * H - 1) == "too_large"
    assert decode_compressed(SimpleNamespace(format="jpeg", data=jpeg),
                             max_pixels=W * H).shape == (H, W, 3)


def test_opencv_errors_become_decode_errors(bgr):
    # Above OpenCV's own 2^30-pixel limit imdecode raises cv2.error; with the cap raised past
    # it, that error must still come out as a corrupt frame, never as cv2.error.
    bomb = jpeg_declaring(encoded(bgr, ".jpg"), 40000, 40000)
    assert _kind("jpeg", bomb, max_pixels=2**31) == "corrupt"


def test_lying_and_broken_data_are_classified(bgr):
    jpeg, png = encoded(bgr, ".jpg"), encoded(bgr, ".png")
    assert _kind("png", png_declaring(png, W * 2, H)) == "corrupt"  # IHDR CRC no longer fits
    assert _kind("jpeg", jpeg[: len(jpeg) // 2]) == "truncated"
    assert _kind("png", png[:20]) == "truncated"
    assert _kind("jpeg", b"") == "empty"
    assert _kind("gif", b"GIF89a" + bytes(64)) == "unsupported_format"
    assert _kind("16UC1; compressedDepth", png) == "unsupported_format"
    assert _kind("png", png[:40] + bytes(len(png) - 40)) == "corrupt"
    with pytest.raises(ImageDecodeError) as info:
        decode_image(SimpleNamespace(format="jpeg", data=3.5))
    assert info.value.kind == "not_an_image"


def test_raw_frames_are_capped_and_classified():
    msg = SimpleNamespace(height=4000, width=4000, encoding="mono8", step=4000, data=b"")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(msg, max_pixels=1000)
    assert info.value.kind == "too_large"
    msg = SimpleNamespace(height="x", width=4, encoding="mono8", step=4, data=bytes(16))
    with pytest.raises(ImageDecodeError) as info:
        decode_image(msg)
    assert info.value.kind == "bad_layout"


def test_reduced_scale_jpeg_decode_matches_a_resize(bgr):
    big = cv2.resize(bgr, (4 * W, 4 * H), interpolation=cv2.INTER_CUBIC)
    msg = SimpleNamespace(format="jpeg", data=encode_jpeg(big[..., ::-1], quality=95))
    header = compressed_header(msg)
    assert header == ImageHeader("jpeg", 4 * W, 4 * H)
    assert reduction_for(header, Size(W, H)) == 4
    assert reduction_for(header, Size(W + 1, H)) == 2
    assert reduction_for(ImageHeader("png", 4 * W, 4 * H), Size(W, H)) == 1
    small = decode_compressed(msg, reduction=4)
    full = cv2.resize(decode_compressed(msg), (W, H), interpolation=cv2.INTER_AREA)
    assert small.shape == (H, W, 3)
    assert np.abs(small.astype(int) - full).mean() < 4
