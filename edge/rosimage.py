"""Decode ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` into RGB numpy arrays.

Duck-typed: any object with the message fields works, so the same code serves rclpy messages
(``data`` is an ``array.array``), rosbags messages (``data`` is a read-only numpy view) and
plain test objects. The result is always a new, writable, C-contiguous ``HxWx3`` uint8 RGB array
that never aliases the message buffer.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

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
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB array; the text names the problem."""


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
                               "buffer") from exc


def decode_raw(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into ``HxWx3`` uint8 RGB.

    ``mono16`` is scaled to 8 bits over its full range (value / 257). Row padding (``step``
    larger than ``width * bytes_per_pixel``) is honoured.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in _RAW:
        raise ImageDecodeError(f"unsupported image encoding {msg.encoding!r}; supported: "
                               f"{', '.join(SUPPORTED_ENCODINGS)}")
    bpp, channels, dtype, conversion = _RAW[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image size {width}x{height} is empty")
    if channels == 2 and width % 2:
        raise ImageDecodeError(f"{encoding} needs an even width, got {width}")
    if encoding.startswith("bayer_") and (width < 2 or height < 2):
        raise ImageDecodeError(f"{encoding} needs at least 2x2 pixels, got {width}x{height}")
    row = width * bpp
    if step < row:
        raise ImageDecodeError(f"step {step} is smaller than width {width} x {bpp} bytes "
                               f"per pixel = {row} for {encoding}")
    if step % np.dtype(dtype).itemsize:
        raise ImageDecodeError(f"step {step} is not a multiple of the {encoding} sample size")
    buf = _as_bytes(msg.data)
    expected = step * height
    if buf.size < expected:
        raise ImageDecodeError(f"truncated {encoding} image: {buf.size} bytes, expected "
                               f"step {step} x height {height} = {expected}")
    if buf.size > expected:
        raise ImageDecodeError(f"{encoding} image has {buf.size} bytes, expected step {step} x "
                               f"height {height} = {expected}")
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


def decode_compressed(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into ``HxWx3`` uint8 RGB."""
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressed depth images are not supported (format {fmt!r})")
    buf = _as_bytes(msg.data)
    if buf.size == 0:
        raise ImageDecodeError(f"empty compressed image (format {fmt!r})")
    head = buf[:2].tobytes()
    # libjpeg decodes a truncated stream with a grey bottom and only a warning, so check that
    # the end-of-image marker is present near the end (encoders may pad after it).
    if head == _JPEG_SOI and buf[-1024:].tobytes().rfind(_JPEG_EOI) < 0:
        raise ImageDecodeError(f"truncated JPEG: no end-of-image marker in {buf.size} bytes")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"corrupt or unknown compressed image ({buf.size} bytes, format "
                               f"{fmt!r}, starts with {head.hex()})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image(msg: Any) -> np.ndarray:
    """Decode either message type: ``CompressedImage`` has ``format``, ``Image`` ``encoding``."""
    if hasattr(msg, "encoding"):
        return decode_raw(msg)
    if hasattr(msg, "format"):
        return decode_compressed(msg)
    raise ImageDecodeError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a "
                           "sensor_msgs/CompressedImage")


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
