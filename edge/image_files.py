"""Image files read by their bytes: the one way the project opens an image file by path.

``cv2.imread`` takes a ``str`` and hands it to C++ as UTF-8: a path whose bytes are not UTF-8
(Python holds them as surrogate escapes) crashes it with a segmentation fault on some OpenCV
builds and cannot open on others. Reading the bytes in Python (``np.fromfile`` encodes the path
as the file system does) and decoding them with ``cv2.imdecode`` works for every path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_image_file(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imread(path, flags)`` for any path: the decoded image, or None when the file is
    empty or not an image OpenCV reads. A missing or unreadable file raises OSError."""
    data = np.fromfile(Path(path), dtype=np.uint8)
    if data.size == 0:
        return None
    return cv2.imdecode(data, flags)
