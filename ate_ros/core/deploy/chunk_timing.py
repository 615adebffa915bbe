"""policy_node's real-time chunking decisions, ROS-free: when the next inference starts, the
committed prefix it is handed and the takeover index its chunk is stamped with.

:class:`ChunkTiming` keeps the plan the executor runs (``blend: rtc``: each chunk from its
takeover index on, the previous plan before it) from the chunks the node published, and an
estimate of the inference latency in control periods (a high quantile over recent chunks):

    timing = ChunkTiming(dt=0.1, chunking="rtc")
    timing.due(now)                      # start an inference now? (the plan runs low)
    prefix, d = timing.request(stamp)    # committed points for stamp + (i+1) dt, delay d
    timing.published(chunk, stamp, d, now)

Times are seconds on the node clock; nothing reads a clock. Not thread-safe: the node calls it
under its lock.
"""

from __future__ import annotations

import numpy as np

from ate_ros.core.deploy.latency import LatencyEstimate
from ate_ros.core.execution.config import CHUNKING_MODES

__all__ = ["ChunkTiming"]

_EPS = 1e-9


class ChunkTiming:
    """Plan book-keeping and the inference trigger of one policy node.

    Args:
        dt: Control period (s): chunk point i is due at its observation + (i + 1) dt.
        chunking: One of :data:`CHUNKING_MODES`. ``rtc``: the next inference starts when the
            plan has ``latency + margin`` points left, with the plan's next points as the
            committed prefix; ``sync``: when the plan is exhausted (the arm holds while the
            model runs); the blends: on every admitted observation (as without this class).
        quantile: Latency quantile used as the inference delay.
        margin: Extra points left when the next rtc inference starts (jitter headroom).
        initial_delay: Delay assumed before any latency was measured (control periods).
    """

    def __init__(self, dt: float, chunking: str = "rtc", quantile: float = 0.95,
                 margin: int = 2, initial_delay: int = 1, window: int = 50) -> None:
        if chunking not in CHUNKING_MODES:
            raise ValueError(f"chunking must be one of {CHUNKING_MODES}, got {chunking!r}")
        self.dt = float(dt)
        self.chunking = chunking
        self.margin = int(margin)
        self.latency = LatencyEstimate(dt, quantile, window, initial_delay)
        self.reset()

    def reset(self) -> None:
        """Forget the plan (a new run, a stop request); the latency estimate is kept."""
        self._times = np.empty(0)
        self._pos: np.ndarray | None = None

    # ----- decisions ----------------------------------------------------------------------
    def remaining(self, now: float) -> int:
        """Planned points due after ``now``."""
        return int(self._times.size - np.searchsorted(self._times, now + _EPS))

    def due(self, now: float) -> bool:
        """Whether an inference on an observation taken now should start."""
        if self.chunking == "rtc":
            return self.remaining(now) <= self.latency.periods() + self.margin
        if self.chunking == "sync":
            return self.remaining(now) == 0
        return True

    def request(self, obs_stamp: float) -> tuple[np.ndarray | None, int]:
        """(committed prefix, inference delay d) for a chunk observed at ``obs_stamp``.

        The prefix (P, width) is the plan at ``obs_stamp + (i + 1) dt`` (linear between its
        points, as the executor interpolates) for the times it covers; ``None`` without a plan
        or outside ``rtc``. d is the latency estimate in control periods: the chunk's first d
        points execute while it is computed, so the executor switches at index d.
        """
        d = self.latency.periods() if self.chunking == "rtc" else 0
        if self.chunking != "rtc" or self._pos is None or not self._times.size:
            return None, d
        times = obs_stamp + self.dt * np.arange(1, self._times.size + 2)
        times = times[(times >= self._times[0] - _EPS) & (times <= self._times[-1] + _EPS)]
        if not times.size:
            return None, d
        prefix = np.stack([np.interp(times, self._times, self._pos[:, j])
                           for j in range(self._pos.shape[1])], axis=1)
        return prefix.astype(np.float32), d

    def published(self, chunk: np.ndarray, obs_stamp: float, takeover: int,
                  now: float) -> None:
        """A chunk (H, width) went out at ``now``: the plan takes it from index ``takeover``
        (the whole chunk replaces the plan outside ``rtc``), and its latency is recorded."""
        self.latency.add(now - obs_stamp)
        c = np.asarray(chunk, dtype=np.float64)
        times = obs_stamp + self.dt * np.arange(1, len(c) + 1)
        k = int(takeover) if self.chunking == "rtc" else 0
        k = min(max(k, 0), len(c) - 1)
        if self._pos is not None and self._times.size and k > 0:
            keep = self._times < times[k] - _EPS
            self._times = np.concatenate([self._times[keep], times[k:]])
            self._pos = np.concatenate([self._pos[keep], c[k:]])
        else:
            self._times, self._pos = times, c
