"""Joint trajectory following with the topic semantics of ros2_control's
joint_trajectory_controller (what the simulated robot does with the commands it receives)."""

from __future__ import annotations

import numpy as np


class TrajectoryFollower:
    """Piecewise-linear joint trajectory with joint_trajectory_controller replacement semantics.

    ``set_trajectory(start, times, positions, now)``: points are at ``start + times``; ``start``
    of 0 (an unset header stamp) means ``now``. The old trajectory keeps running until the new
    one starts; from there the path goes from the old trajectory's value at the start to the new
    points; points already in the past are dropped. After the last point the position is held.
    """

    def __init__(self, q0: np.ndarray, now: float = 0.0) -> None:
        q0 = np.asarray(q0, dtype=np.float64)
        self._t = np.array([now])
        self._q = q0[None].copy()
        self.received = 0
        self.dropped_points = 0

    def sample(self, t: float) -> np.ndarray:
        """Commanded position at time ``t``."""
        ts, qs = self._t, self._q
        if t <= ts[0]:
            return qs[0].copy()
        if t >= ts[-1]:
            return qs[-1].copy()
        i = int(np.searchsorted(ts, t, side="right")) - 1
        f = (t - ts[i]) / max(ts[i + 1] - ts[i], 1e-12)
        return qs[i] * (1 - f) + qs[i + 1] * f

    def set_trajectory(self, start: float, times: np.ndarray, positions: np.ndarray,
                       now: float) -> None:
        times = np.asarray(times, dtype=np.float64)
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[0] != times.shape[0]:
            raise ValueError(f"{times.shape[0]} times but positions of shape {positions.shape}")
        if positions.shape[1] != self._q.shape[1]:
            raise ValueError(f"trajectory has {positions.shape[1]} joints, expected "
                             f"{self._q.shape[1]}")
        self.received += 1
        t0 = now if start <= 0 else max(start, now)
        abs_t = (start if start > 0 else now) + times
        keep_new = abs_t > t0
        self.dropped_points += int((~keep_new).sum())
        anchor = self.sample(t0)
        old = self._t < t0
        old &= self._t > now  # only the still-future part of the old trajectory survives
        ts = [np.array([now]), self._t[old], np.array([t0]), abs_t[keep_new]]
        qs = [self.sample(now)[None], self._q[old], anchor[None], positions[keep_new]]
        t_all, q_all = np.concatenate(ts), np.concatenate(qs)
        # Drop duplicated times (now == t0), keeping the later entry.
        keep = np.append(np.diff(t_all) > 1e-9, True)
        self._t, self._q = t_all[keep], q_all[keep]

    def hold(self, now: float) -> None:
        """Stop: hold the currently commanded position."""
        q = self.sample(now)
        self._t, self._q = np.array([now]), q[None]

    @property
    def end_time(self) -> float:
        return float(self._t[-1])
