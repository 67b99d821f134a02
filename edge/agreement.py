"""Label agreement that says what it was measured on: classes present, entropy, informative or not.

A fraction of agreeing pixels means nothing on its own. On frames where the reference labels
every pixel with one class, a graph that outputs that one constant class agrees 100 %; the
figure then checks nothing. So every agreement carries the number of classes the reference
predicts on those frames, the entropy of the reference labels (bits) and the share of the most
frequent class, and a check is **informative** only when a constant output would fail it: at
least two classes, and the majority class covers less than the threshold. A check that is not
informative is reported as such and never as passed (it can still fail: labels that disagree
with a one-class reference are wrong).

Percentages are printed with as many digits as it takes not to round a mismatch away
(``99.9997 %``, never ``100.000 %`` unless every pixel agrees), with the count of differing
pixels next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PASSED = "passed"
FAILED = "failed"
NOT_INFORMATIVE = "not informative"
LABEL_BINS = 256  # labels are uint8


def format_percent(part: int, whole: int, digits: int = 4) -> str:
    """``100 * part / whole`` with at least ``digits`` decimals, more when they would round a
    difference away (never ``100.0000`` for ``part < whole``, never ``0.0000`` for ``part > 0``)."""
    if whole <= 0:
        return "n/a"
    value = 100.0 * part / whole
    text = f"{value:.{digits}f}"
    while part not in (0, whole) and float(text) in (0.0, 100.0) and digits < 12:
        digits += 1
        text = f"{value:.{digits}f}"
    return text


@dataclass(frozen=True)
class LabelAgreement:
    """Pixels where ``labels`` equal the reference's, and what the reference labels contain."""

    pixels: int
    agreeing: int
    threshold: float  # the fraction the check requires
    class_pixels: tuple[int, ...]  # reference pixels per class id present, by class id
    class_ids: tuple[int, ...]

    @property
    def fraction(self) -> float:
        return self.agreeing / self.pixels if self.pixels else 0.0

    @property
    def classes_present(self) -> int:
        return len(self.class_ids)

    @property
    def majority_share(self) -> float:
        return max(self.class_pixels) / self.pixels if self.pixels else 1.0

    @property
    def entropy_bits(self) -> float:
        shares = [n / self.pixels for n in self.class_pixels if n]
        return float(-sum(p * math.log2(p) for p in shares)) + 0.0

    @property
    def informative(self) -> bool:
        """A graph that outputs one constant class would fail this check."""
        return self.classes_present >= 2 and self.majority_share < self.threshold

    @property
    def status(self) -> str:
        """Failed below the threshold (wrong labels are evidence on any frames); otherwise
        passed only when informative."""
        if self.fraction < self.threshold:
            return FAILED
        return PASSED if self.informative else NOT_INFORMATIVE

    def percent(self) -> str:
        return format_percent(self.agreeing, self.pixels)

    def describe(self) -> str:
        """One line: figure, differing pixels, what the frames contain, verdict."""
        return (f"{self.percent()} % of labels agree ({self.pixels - self.agreeing} of "
                f"{self.pixels} pixels differ) on frames where the reference predicts "
                f"{self.classes_present} class(es), label entropy {self.entropy_bits:.3f} bits, "
                f"largest class {format_percent(max(self.class_pixels, default=0), self.pixels)}"
                f" %: {self.status} (threshold {100 * self.threshold:g} %)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_agreement": self.fraction,
            "label_agreement_percent": self.percent(),
            "pixels": self.pixels,
            "differing_pixels": self.pixels - self.agreeing,
            "classes_present": self.classes_present,
            "class_ids_present": list(self.class_ids),
            "label_entropy_bits": self.entropy_bits,
            "majority_class_share": self.majority_share,
            "threshold": self.threshold,
            "informative": self.informative,
            "status": self.status,
        }


class AgreementCounter:
    """Accumulates per-frame label maps into one :class:`LabelAgreement`."""

    def __init__(self) -> None:
        self.pixels = 0
        self.agreeing = 0
        self.worst_frame = (1, 1)  # (agreeing, pixels) of the frame that agrees least
        self._hist = np.zeros(LABEL_BINS, dtype=np.int64)

    def add(self, labels: np.ndarray, reference: np.ndarray) -> float:
        """Count one frame; returns its agreeing fraction."""
        if labels.shape != reference.shape:
            raise ValueError(f"label maps differ in shape: {labels.shape} vs {reference.shape}")
        same = int((labels == reference).sum())
        self.agreeing += same
        self.pixels += reference.size
        self._hist += np.bincount(reference.astype(np.int64).ravel(), minlength=LABEL_BINS)
        frame = same / reference.size
        if frame < self.worst_frame[0] / self.worst_frame[1]:
            self.worst_frame = (same, reference.size)
        return frame

    def result(self, threshold: float) -> LabelAgreement:
        ids = np.flatnonzero(self._hist)
        return LabelAgreement(pixels=self.pixels, agreeing=self.agreeing, threshold=threshold,
                              class_pixels=tuple(int(self._hist[i]) for i in ids),
                              class_ids=tuple(int(i) for i in ids))
