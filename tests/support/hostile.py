"""Hostile image files made from real encoder output: headers that lie about the size."""

from __future__ import annotations

import struct


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` (baseline) with its frame header rewritten to declare ``width`` x ``height``."""
    out = bytearray(jpeg)
    struct.pack_into(">HH", out, jpeg.index(b"\xff\xc0") + 5, height, width)
    return bytes(out)


def png_declaring(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR rewritten to declare ``width`` x ``height`` (its CRC then fails)."""
    out = bytearray(png)
    struct.pack_into(">II", out, 16, width, height)
    return bytes(out)
