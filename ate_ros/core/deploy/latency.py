"""Bounded latency records with percentiles (node diagnostics, ``ate-ros run`` summaries) and
the inference-latency estimate of real-time chunking, in control periods."""

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


class LatencyEstimate:
    """A high quantile of the recent inference latencies, rounded up to whole control periods.

    Like LeRobot's ``LatencyTracker`` (a sliding window with percentile queries) but answering
    in control periods: the number of chunk points that execute while the next chunk is
    computed, i.e. the prefix the sampler must keep frozen.
    """

    def __init__(self, period: float, quantile: float = 0.95, window: int = 50,
                 initial: int = 1) -> None:
        if not period > 0:
            raise ValueError(f"period ({period}) must be > 0 s")
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile ({quantile}) must be in (0, 1]")
        self.period = float(period)
        self.quantile = float(quantile)
        self.initial = int(initial)
        self._values: deque[float] = deque(maxlen=int(window))

    def add(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self._values.append(float(seconds))

    def __len__(self) -> int:
        return len(self._values)

    def seconds(self) -> float:
        """The quantile in seconds (``initial`` periods before any sample)."""
        if not self._values:
            return self.initial * self.period
        return float(np.quantile(np.asarray(self._values), self.quantile))

    def periods(self) -> int:
        """ceil(quantile / period): whole control periods, at least 1 once measured."""
        if not self._values:
            return self.initial
        return max(int(math.ceil(self.seconds() / self.period - 1e-9)), 1)
