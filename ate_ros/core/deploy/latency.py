"""Bounded latency records with percentiles (node diagnostics, ``ate-ros run`` summaries)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class LatencyStats:
    """A bounded window of latencies (s) with percentiles."""

    def __init__(self, maxlen: int = 10000) -> None:
        self._v: deque[float] = deque(maxlen=maxlen)
        self.count = 0

    def add(self, seconds: float) -> None:
        if math.isfinite(seconds):
            self._v.append(float(seconds))
            self.count += 1

    def percentile(self, p: float) -> float:
        return float(np.percentile(np.fromiter(self._v, float), p)) if self._v else float("nan")

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "p50": self.percentile(50), "p99": self.percentile(99),
                "max": max(self._v) if self._v else float("nan")}
