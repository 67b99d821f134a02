"""The size an image file declares in its header, read without decoding a single pixel.

A few kilobytes of JPEG can declare 20000x20000 pixels, which a decoder then tries to allocate
(gigabytes) before it finds out that the data is not there. Reading the declared width and height
first lets ``uwstego.rosimage`` refuse such frames for the cost of a few dozen byte reads.
Formats: JPEG (SOF marker), PNG (IHDR), BMP (DIB header) and TIFF (IFD0 tags 256/257), the
formats that camera drivers and the training folders deliver. Plain bytes in, no numpy, no cv2.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from uwstego.errors import UwstegoError

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})


class HeaderError(UwstegoError, ValueError):
    """A header that cannot be read; ``kind`` is ``truncated`` or ``corrupt``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "jpeg" | "png" | "bmp" | "tiff"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader | None:
    """The declared size of a JPEG, PNG, BMP or TIFF file; None when the format is none of these.

    Raises HeaderError when the header is cut short or makes no sense (zero size, no frame
    header before the image data).
    """
    if data[:2] == JPEG_SOI:
        return _jpeg(data)
    if data[:8] == PNG_SIGNATURE:
        return _png(data)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:4] in _TIFF_MAGIC:
        return _tiff(data)
    return None


def _checked(fmt: str, width: int, height: int) -> ImageHeader:
    if width <= 0 or height <= 0:
        raise HeaderError("corrupt", f"{fmt.upper()} header declares an empty size "
                                     f"{width}x{height}")
    return ImageHeader(fmt, width, height)


def _jpeg(data: bytes) -> ImageHeader:
    pos, size = 2, len(data)
    while True:
        # Markers may be preceded by any number of 0xFF fill bytes.
        while pos < size and data[pos] == 0xFF:
            pos += 1
        if pos >= size:
            raise HeaderError("truncated", f"truncated JPEG: no frame header in {size} bytes")
        marker = data[pos]
        if data[pos - 1] != 0xFF or marker == 0x00:
            raise HeaderError("corrupt", f"corrupt JPEG: no marker at byte {pos - 1}")
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            raise HeaderError("corrupt", "corrupt JPEG: image data before the frame header")
        if pos + 2 > size:
            raise HeaderError("truncated", f"truncated JPEG: header cut at byte {size}")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise HeaderError("corrupt", f"corrupt JPEG: segment length {length}")
        if marker in _SOF:
            if pos + 7 > size:
                raise HeaderError("truncated", f"truncated JPEG: frame header cut at byte "
                                               f"{size}")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            # Height 0 means "given later by a DNL marker", which decoders rarely support.
            return _checked("jpeg", width, height)
        pos += length


def _png(data: bytes) -> ImageHeader:
    if len(data) < 24:
        raise HeaderError("truncated", f"truncated PNG: {len(data)} bytes, no IHDR")
    if data[12:16] != b"IHDR":
        raise HeaderError("corrupt", "corrupt PNG: the first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return _checked("png", width, height)


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise HeaderError("truncated", f"truncated BMP: {len(data)} bytes")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return _checked("bmp", width, abs(height))  # negative height: rows stored top-down


def _tiff(data: bytes) -> ImageHeader:
    order = "<" if data[:2] == b"II" else ">"
    size = len(data)
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
    except struct.error:
        raise HeaderError("truncated", f"truncated TIFF: no directory in {size} bytes") from None
    found: dict[int, int] = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if entry + 12 > size:
            raise HeaderError("truncated", f"truncated TIFF: directory cut at byte {size}")
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):
            # SHORT (3) sits in the first two bytes of the value field, LONG (4) fills it.
            found[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), data,
                                            entry + 8)[0]
    if len(found) < 2:
        raise HeaderError("corrupt", "corrupt TIFF: no image width and length tags")
    return _checked("tiff", found[256], found[257])
