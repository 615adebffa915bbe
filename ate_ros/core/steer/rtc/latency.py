"""Latency estimate of chunk inference, in control periods (the RTC inference delay d)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np


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
