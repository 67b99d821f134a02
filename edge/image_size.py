"""The size of an image in pixels, width by height: the one type for camera and network sizes.

Written ``"WxH"`` on command lines and in logs, ``{"width": W, "height": H}`` in JSON, ``(H, W)``
as a numpy shape and ``(W, H)`` where OpenCV wants a ``dsize``; the conversions live here so that
no caller swaps the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def __post_init__(self) -> None:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                   for v in (self.width, self.height)):
            raise ValueError(f"size must be whole pixels, got {self.width!r}x{self.height!r}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def parse(cls, text: str) -> Size:
        """``"1280x720"`` (width x height)."""
        try:
            w, h = text.lower().split("x")
            return cls(int(w), int(h))
        except ValueError as exc:
            raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from exc

    @classmethod
    def of(cls, image: np.ndarray) -> Size:
        """The size of an ``HxW`` or ``HxWxC`` array."""
        h, w = image.shape[:2]
        return cls(w, h)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Size:
        return cls(data["width"], data["height"])

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    def to_dict(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height}

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, as numpy indexes an image."""
        return self.height, self.width

    @property
    def dsize(self) -> tuple[int, int]:
        """``(width, height)``, as OpenCV's ``resize``/``VideoWriter`` take it."""
        return self.width, self.height
