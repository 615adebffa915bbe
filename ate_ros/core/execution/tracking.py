"""Whether the robot follows the executor's commands, judged from stamped joint_states.

The executor continues each command from its previous one, so a robot that stopped following
(an e-stop, a controller that holds after a failure whose result has not arrived, a controller
without path tolerances) would get a next trajectory that starts where it never got to. The
measured joints show it, but only when compared with the command that was due when they were
measured: joint_states reach a loaded process late, and a late message compared with the latest
command looks like a robot left behind (a guard timed at receipt restarted a following robot
from an old position in CI). So :class:`TrackingCheck` keeps the recent commands and compares a
measurement with the command due at its ``header.stamp``; unstamped joint_states are not
checked.
"""

from __future__ import annotations

import collections

import numpy as np

__all__ = ["STAMP_SKEW", "TrackingCheck"]

STAMP_SKEW = 0.1
"""Seconds a joint_states stamp may be ahead of the executor's clock (clocks of two machines);
a stamp further ahead is on another clock and is not used."""


class TrackingCheck:
    """The recent commands, and the check of a measurement against them.

    Args:
        names: Joint names, for the message.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self._times: collections.deque[float] = collections.deque()
        self._pos: collections.deque[np.ndarray] = collections.deque()

    def clear(self) -> None:
        """The commands restart from the measured state: earlier ones no longer apply."""
        self._times.clear()
        self._pos.clear()

    def record(self, t: float, q: np.ndarray, keep: float) -> None:
        """The command due at time ``t``; commands due more than ``keep`` seconds before it are
        dropped (older measurements count as stale anyway). A time before the last one (the
        clock went back, the commands restarted) clears what was kept."""
        if self._times and t <= self._times[-1]:
            if t == self._times[-1]:  # the same tick again
                return
            self.clear()
        self._times.append(float(t))
        self._pos.append(np.asarray(q, dtype=np.float64).copy())
        while self._times and self._times[0] < t - keep:
            self._times.popleft()
            self._pos.popleft()

    def commanded_at(self, t: float) -> np.ndarray | None:
        """The command interpolated at ``t``; None before the first command kept."""
        if not self._times or t < self._times[0]:
            return None
        times = np.fromiter(self._times, dtype=np.float64)
        pos = np.stack(self._pos)
        return np.array([np.interp(t, times, pos[:, j]) for j in range(pos.shape[1])])

    def check(self, stamp: float, measured: np.ndarray, vmax: np.ndarray, max_error: float,
              lag: float) -> str | None:
        """Why ``measured`` (taken at ``stamp``) shows a robot not following; "" when it
        follows; None when nothing kept was due by ``stamp`` (not judged).

        A joint may trail the command due at ``stamp`` by as much as it moves at its velocity
        limit (``vmax``) in ``lag`` seconds (controller and measurement delay), plus ``max_error``.
        """
        ref = self.commanded_at(stamp)
        if ref is None:
            return None
        gap = np.abs(np.asarray(measured, dtype=np.float64) - ref)
        allowed = np.asarray(vmax, dtype=np.float64) * lag + max_error
        j = int(np.argmax(gap - allowed))
        if not gap[j] > allowed[j]:
            return ""
        return (f"joint {self.names[j]} was {gap[j]:.3f} from the command when measured, more "
                f"than {allowed[j]:.3f} ({lag:.3f} s at its velocity limit plus "
                f"max_tracking_error {max_error:.3f})")
