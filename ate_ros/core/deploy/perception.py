"""Perception logic without ROS: fitting camera images to the embodiment, and forming
synchronised, fresh observations from the newest sample of every input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def prepare_image(img: np.ndarray, width: int, height: int, crop: str = "center") -> np.ndarray:
    """Fit an (H, W, 3) uint8 image to ``width`` x ``height``.

    ``center`` crops the largest centred region with the target aspect ratio first (no
    distortion); ``stretch`` only resizes. Already-sized images are returned unchanged.
    """
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    if crop == "center":
        target = width / height
        if w / h > target:  # too wide: crop columns
            cw = max(1, round(h * target))
            x0 = (w - cw) // 2
            img = img[:, x0:x0 + cw]
        elif w / h < target:  # too tall: crop rows
            ch = max(1, round(w / target))
            y0 = (h - ch) // 2
            img = img[y0:y0 + ch]
    shrink = img.shape[1] > width
    return cv2.resize(np.ascontiguousarray(img), (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass
class _Sample:
    stamp: float
    value: object


class FreshestSync:
    """Newest sample per input; forms an observation only when every input is fresh.

    ``check(now)`` returns ``(ok, reason)``: not ok when an input never arrived, is older than
    ``max_age`` or when the inputs are more than ``max_skew`` apart. Refusals are counted per
    reason (``refused``), for /diagnostics.
    """

    def __init__(self, inputs: list[str], max_age: float, max_skew: float) -> None:
        self.inputs = list(inputs)
        self.max_age = max_age
        self.max_skew = max_skew
        self._latest: dict[str, _Sample] = {}
        self.refused: dict[str, int] = {}
        self.received: dict[str, int] = dict.fromkeys(self.inputs, 0)

    def put(self, name: str, stamp: float, value: object) -> None:
        self.received[name] = self.received.get(name, 0) + 1
        old = self._latest.get(name)
        if old is None or stamp >= old.stamp:
            self._latest[name] = _Sample(stamp, value)

    def offer(self, name: str, stamp: float, value: object, now: float) -> bool:
        """:meth:`put` unless the sample is already older than ``max_age`` (counted, False)."""
        if now - stamp > self.max_age:
            self.received[name] = self.received.get(name, 0) + 1
            self._refuse("stale", f"{name} arrived {now - stamp:.3f}s old")
            return False
        self.put(name, stamp, value)
        return True

    def get(self, name: str):
        s = self._latest.get(name)
        return None if s is None else s.value

    def stamp(self, name: str) -> float | None:
        s = self._latest.get(name)
        return None if s is None else s.stamp

    def ages(self, now: float) -> dict[str, float]:
        return {n: now - s.stamp for n, s in self._latest.items()}

    def check(self, now: float) -> tuple[bool, str]:
        missing = [n for n in self.inputs if n not in self._latest]
        if missing:
            return self._refuse("missing", f"no data yet on {missing}")
        stamps = {n: self._latest[n].stamp for n in self.inputs}
        stale = {n: round(now - s, 3) for n, s in stamps.items() if now - s > self.max_age}
        if stale:
            return self._refuse("stale", f"inputs older than max_age={self.max_age}s: {stale}")
        skew = max(stamps.values()) - min(stamps.values())
        if skew > self.max_skew:
            return self._refuse("skew", f"inputs {skew:.3f}s apart (max_skew={self.max_skew})")
        return True, ""

    def newest_stamp(self) -> float:
        return max(self._latest[n].stamp for n in self.inputs)

    def _refuse(self, kind: str, reason: str) -> tuple[bool, str]:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        return False, reason
