"""Decode ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` into RGB numpy arrays.

Duck-typed: any object with the message fields works, so the same code serves rclpy messages
(``data`` is an ``array.array``), rosbags messages (``data`` is a read-only numpy view) and
plain test objects. The result is always a new, writable, C-contiguous ``HxWx3`` uint8 RGB array
that never aliases the message buffer.

Containment: whatever the message holds, decoding either returns a frame or raises
:class:`ImageDecodeError`, whose ``kind`` (one of ``DECODE_ERROR_KINDS``) says what was wrong.
OpenCV errors and out-of-memory on one frame become such errors too, so that every consumer (the
node, replay, training) can skip the frame, count it by kind and go on. Frames that declare more
than ``max_pixels`` pixels are refused before anything is allocated: for compressed frames the
size is read from the file header (``uwstego.image_header``), not from the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from uwstego.errors import UwstegoError
from uwstego.image_header import HeaderError, ImageHeader, read_header
from uwstego.image_size import Size

# encoding -> (bytes per pixel, channels, dtype, cv2 conversion to RGB or None)
_RAW: dict[str, tuple[int, int, type, int | None]] = {
    "rgb8": (3, 3, np.uint8, None),
    "bgr8": (3, 3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, np.uint8, cv2.COLOR_GRAY2RGB),
    "mono16": (2, 1, np.uint16, cv2.COLOR_GRAY2RGB),
    # ROS "yuv422" is UYVY byte order; "yuv422_yuy2" is YUYV (sensor_msgs/image_encodings.hpp).
    "yuv422": (2, 2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, 2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, 2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    # OpenCV names Bayer patterns after the second row, so ROS "rggb" is OpenCV "BG".
    "bayer_rggb8": (1, 1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, 1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, 1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, 1, np.uint8, cv2.COLOR_BayerGB2RGB),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_RAW))
_JPEG_EOI = b"\xff\xd9"
# 8K UHD (7680x4320) fits; one RGB copy of this many pixels is 96 MiB. The node sets its own cap
# from the bundle's camera size.
DEFAULT_MAX_PIXELS = 2**25
# JPEG decoders can scale by 1/2, 1/4 and 1/8 while decoding (libjpeg's DCT scaling).
REDUCTIONS = (1, 2, 4, 8)
_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}

# Why a frame was refused, as counted by the node, replay and training.
DECODE_ERROR_KINDS = (
    "empty",                 # no data, or a zero width or height
    "too_large",             # declares more than max_pixels pixels
    "truncated",             # less data than the header or layout asks for
    "corrupt",               # the decoder (or OpenCV) failed on the data
    "size_mismatch",         # the decoded size is not the size the header declared
    "unsupported_format",    # not JPEG/PNG/BMP/TIFF, or a compressedDepth image
    "unsupported_encoding",  # a raw encoding outside SUPPORTED_ENCODINGS
    "bad_layout",            # step, width or data length inconsistent with the encoding
    "out_of_memory",         # the frame did not fit in memory
    "not_an_image",          # neither message type, or data that is not a byte buffer
)


class ImageDecodeError(UwstegoError, ValueError):
    """An image message that cannot be turned into an RGB array; the text names the problem and
    ``kind`` (one of ``DECODE_ERROR_KINDS``) classifies it."""

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


def _as_bytes(data: Any) -> np.ndarray:
    """View ``data`` (numpy, array.array, bytes, memoryview or a list of ints) as flat uint8."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError as exc:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not a byte "
                               "buffer", "not_an_image") from exc


def _contained(decode: Callable[[], np.ndarray], what: str) -> np.ndarray:
    """Run ``decode``, turning every failure of the frame into an ImageDecodeError."""
    try:
        return decode()
    except ImageDecodeError:
        raise
    except MemoryError:
        raise ImageDecodeError(f"out of memory decoding {what}", "out_of_memory") from None
    except cv2.error as exc:
        # OpenCV's text spans several lines; the last one names the failed check.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ImageDecodeError(f"OpenCV failed on {what}: {lines[-1] if lines else exc}",
                               "corrupt") from None
    except AttributeError as exc:
        raise ImageDecodeError(f"{what} lacks a field: {exc}", "not_an_image") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageDecodeError(f"{what} has an invalid field: {exc}", "bad_layout") from None


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(f"{what} declares {width}x{height} = {width * height} pixels, "
                               f"more than max_pixels {max_pixels}", "too_large")


def decode_raw(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into ``HxWx3`` uint8 RGB.

    ``mono16`` is scaled to 8 bits over its full range (value / 257). Row padding (``step``
    larger than ``width * bytes_per_pixel``) is honoured. Raises ImageDecodeError.
    """
    return _contained(lambda: _decode_raw(msg, max_pixels), "raw image")


def _decode_raw(msg: Any, max_pixels: int) -> np.ndarray:
    encoding = str(msg.encoding).lower()
    if encoding not in _RAW:
        raise ImageDecodeError(f"unsupported image encoding {msg.encoding!r}; supported: "
                               f"{', '.join(SUPPORTED_ENCODINGS)}", "unsupported_encoding")
    bpp, channels, dtype, conversion = _RAW[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image size {width}x{height} is empty", "empty")
    _check_pixels(width, height, max_pixels, f"{encoding} image")
    if channels == 2 and width % 2:
        raise ImageDecodeError(f"{encoding} needs an even width, got {width}", "bad_layout")
    if encoding.startswith("bayer_") and (width < 2 or height < 2):
        raise ImageDecodeError(f"{encoding} needs at least 2x2 pixels, got {width}x{height}",
                               "bad_layout")
    row = width * bpp
    if step < row:
        raise ImageDecodeError(f"step {step} is smaller than width {width} x {bpp} bytes "
                               f"per pixel = {row} for {encoding}", "bad_layout")
    if step % np.dtype(dtype).itemsize:
        raise ImageDecodeError(f"step {step} is not a multiple of the {encoding} sample size",
                               "bad_layout")
    buf = _as_bytes(msg.data)
    expected = step * height
    if buf.size < expected:
        raise ImageDecodeError(f"truncated {encoding} image: {buf.size} bytes, expected "
                               f"step {step} x height {height} = {expected}", "truncated")
    if buf.size > expected:
        raise ImageDecodeError(f"{encoding} image has {buf.size} bytes, expected step {step} x "
                               f"height {height} = {expected}", "bad_layout")
    rows = buf.reshape(height, step)[:, :row]
    if dtype is np.uint16:
        big = bool(getattr(msg, "is_bigendian", 0))
        samples = np.ascontiguousarray(rows).view(">u2" if big else "<u2").reshape(height, width)
        # Rounded division by 257 maps 0..65535 exactly onto 0..255.
        pixels = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        return np.array(pixels, order="C", copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def compressed_header(msg: Any) -> ImageHeader:
    """The size a ``CompressedImage`` declares, read from its header without decoding."""
    return _contained(lambda: _header(_compressed_bytes(msg)), "compressed image")


def _compressed_bytes(msg: Any) -> np.ndarray:
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressed depth images are not supported (format {fmt!r})",
                               "unsupported_format")
    buf = _as_bytes(msg.data)
    if buf.size == 0:
        raise ImageDecodeError(f"empty compressed image (format {fmt!r})", "empty")
    return buf


def _header(buf: np.ndarray) -> ImageHeader:
    try:
        header = read_header(memoryview(buf))
    except HeaderError as exc:
        raise ImageDecodeError(str(exc), exc.kind) from None
    if header is None:
        raise ImageDecodeError(f"corrupt or unknown compressed image ({buf.size} bytes, "
                               f"starts with {buf[:4].tobytes().hex()}; expected JPEG, PNG, "
                               "BMP or TIFF)", "unsupported_format")
    return header


def reduction_for(header: ImageHeader, size: Size) -> int:
    """The largest JPEG decode reduction that still gives at least ``size``."""
    if header.format != "jpeg":
        return 1
    fits = [r for r in REDUCTIONS
            if -(-header.width // r) >= size.width and -(-header.height // r) >= size.height]
    return max(fits, default=1)


def decode_compressed(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                      reduction: int = 1) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG; BMP and TIFF files too) into
    ``HxWx3`` uint8 RGB.

    ``reduction`` (1, 2, 4 or 8) decodes a JPEG at that fraction of its size, which is much
    cheaper than a full decode and a resize; other formats ignore it. Raises ImageDecodeError.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction}")
    return _contained(lambda: _decode_compressed(msg, max_pixels, reduction), "compressed image")


def _decode_compressed(msg: Any, max_pixels: int, reduction: int) -> np.ndarray:
    buf = _compressed_bytes(msg)
    header = _header(buf)
    name = header.format.upper()
    if header.format != "jpeg":
        reduction = 1
    # What gets allocated is the decoded size, so a reduced decode is capped at its own size.
    expected = (-(-header.height // reduction), -(-header.width // reduction))
    if expected[0] * expected[1] > max_pixels:
        scale = f" ({expected[1]}x{expected[0]} at 1/{reduction} scale)" if reduction > 1 else ""
        raise ImageDecodeError(f"{name} declares {header.width}x{header.height} = "
                               f"{header.pixels} pixels{scale}, more than max_pixels "
                               f"{max_pixels}", "too_large")
    # libjpeg decodes a truncated stream with a grey bottom and only a warning, so check that
    # the end-of-image marker is present near the end (encoders may pad after it).
    if header.format == "jpeg" and buf[-1024:].tobytes().rfind(_JPEG_EOI) < 0:
        raise ImageDecodeError(f"truncated JPEG: no end-of-image marker in {buf.size} bytes",
                               "truncated")
    bgr = cv2.imdecode(buf, _REDUCED_FLAGS[reduction])
    if bgr is None:
        raise ImageDecodeError(f"corrupt {name} image ({buf.size} bytes, declared "
                               f"{header.width}x{header.height})", "corrupt")
    if bgr.shape[:2] != expected:
        raise ImageDecodeError(f"{name} header declares {header.width}x{header.height} but the "
                               f"data decodes to {bgr.shape[1]}x{bgr.shape[0]}", "size_mismatch")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                 reduction: int = 1) -> np.ndarray:
    """Decode either message type: ``CompressedImage`` has ``format``, ``Image`` ``encoding``.

    ``reduction`` applies to JPEG only (see :func:`decode_compressed`). Raises ImageDecodeError.
    """
    if hasattr(msg, "encoding"):
        return decode_raw(msg, max_pixels)
    if hasattr(msg, "format"):
        return decode_compressed(msg, max_pixels, reduction)
    raise ImageDecodeError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a "
                           "sensor_msgs/CompressedImage", "not_an_image")


def encode_jpeg(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """JPEG-encode an ``HxWx3`` RGB or ``HxW`` grey uint8 image; returns the bytes as uint8."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"encode_jpeg needs HxWx3 RGB or HxW uint8, got {image.dtype} "
                         f"{image.shape}")
    src = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".jpg", src, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.reshape(-1)
