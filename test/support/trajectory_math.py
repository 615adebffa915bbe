"""Where a position-controlled joint trajectory is at a time: the tests' model of a controller."""

from __future__ import annotations

import numpy as np


def interp_positions(times: np.ndarray, pos: np.ndarray, t: float) -> np.ndarray:
    """Positions (D,) of the trajectory (times (N,), pos (N, D)) at ``t``: linear between
    points, held before the first and after the last (as np.interp)."""
    pos = np.asarray(pos)
    return np.array([np.interp(t, times, pos[:, j]) for j in range(pos.shape[1])])
