"""Time alignment of recorded streams onto a fixed control-rate grid (pure NumPy, no I/O).

All times are integer nanoseconds (int64) so that grids and stamps compare exactly. Alignment is
causal "as-of": each grid tick takes the newest message stamped at or before it, and only if
that message is at most ``max_age`` old: what a controller running at that tick could have
known, never a message from the future.
"""

from __future__ import annotations

import numpy as np

NS = 1_000_000_000


def period_ns(rate_hz: float) -> int:
    """Control period in integer nanoseconds."""
    if not rate_hz > 0:
        raise ValueError(f"rate must be positive, got {rate_hz}")
    return int(round(NS / rate_hz))


def make_grid(start_ns: int, end_ns: int, step_ns: int) -> np.ndarray:
    """Ticks ``start, start + step, ...`` up to and including ``end`` (int64)."""
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    n = (int(end_ns) - int(start_ns)) // int(step_ns) + 1
    return int(start_ns) + np.arange(n, dtype=np.int64) * int(step_ns)


def asof(stamps: np.ndarray, grid: np.ndarray, max_age_ns: int | np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """Latest-before alignment.

    Args:
        stamps: (N,) strictly increasing int64 message stamps.
        grid: (T,) int64 ticks.
        max_age_ns: Largest accepted ``tick - stamp``; a scalar, or (N,) per message (e.g. a
            trajectory stays valid for its own duration).

    Returns:
        ``(idx, fresh)``: (T,) index of the newest message at or before each tick (-1 if none),
        and (T,) bool, True where such a message exists and is not too old.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    idx = np.searchsorted(stamps, grid, side="right") - 1
    fresh = idx >= 0
    if len(stamps):
        safe = np.maximum(idx, 0)
        limit = (np.asarray(max_age_ns, dtype=np.int64)[safe] if np.ndim(max_age_ns)
                 else np.int64(max_age_ns))
        fresh &= (grid - stamps[safe]) <= limit
    return idx, fresh


def increasing_mask(stamps: np.ndarray, segment: np.ndarray | None = None) -> np.ndarray:
    """True for messages whose stamp is above every earlier stamp of the same segment.

    A message stamped at or before an earlier one (out-of-order delivery, a duplicate) cannot
    be placed on a causal timeline, so the converter drops it with a reason.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    keep = np.ones(len(stamps), dtype=bool)
    if len(stamps) < 2:
        return keep
    seg = np.zeros(len(stamps), dtype=np.int64) if segment is None else np.asarray(segment)
    for s in np.unique(seg):
        sel = np.flatnonzero(seg == s)
        st = stamps[sel]
        prev_max = np.maximum.accumulate(st)
        keep[sel[1:]] = st[1:] > prev_max[:-1]
    return keep


def backward_jumps(stamps: np.ndarray, min_jump_ns: int) -> np.ndarray:
    """Indices ``i`` where ``stamps[i]`` is more than ``min_jump_ns`` below ``stamps[i - 1]``.

    Such a step is a clock jump (a restarted simulation clock, a bag spliced from two runs),
    not message reordering, and splits the recording into clock segments.
    """
    stamps = np.asarray(stamps, dtype=np.int64)
    if len(stamps) < 2:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.diff(stamps) < -int(min_jump_ns)) + 1


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the maximal runs of True in a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def split_on_gaps(stamps: np.ndarray, max_gap_ns: int) -> list[tuple[int, int]]:
    """Index ranges of ``stamps`` (increasing) with no step larger than ``max_gap_ns``."""
    n = len(stamps)
    if n == 0:
        return []
    cuts = np.flatnonzero(np.diff(np.asarray(stamps, dtype=np.int64)) > max_gap_ns) + 1
    edges = [0, *cuts.tolist(), n]
    return list(zip(edges[:-1], edges[1:], strict=True))


def measured_rate(stamps: np.ndarray) -> float:
    """Messages per second over the span of ``stamps`` (0 for fewer than two)."""
    stamps = np.asarray(stamps, dtype=np.int64)
    if len(stamps) < 2:
        return 0.0
    span = float(stamps.max() - stamps.min())
    return (len(stamps) - 1) * NS / span if span > 0 else 0.0


def interpolate_points(tfs: np.ndarray, points: np.ndarray, tau: float) -> np.ndarray:
    """Position at ``tau`` seconds after a trajectory's stamp: linear between its points.

    Before the first point the first point is returned (the controller is heading there);
    after the last point the last one (the controller holds it).

    Args:
        tfs: (P,) increasing ``time_from_start`` in seconds.
        points: (P, D) positions.
        tau: Query time in seconds.
    """
    if len(tfs) == 1 or tau <= tfs[0]:
        return points[0]
    if tau >= tfs[-1]:
        return points[-1]
    j = int(np.searchsorted(tfs, tau, side="right"))
    w = (tau - tfs[j - 1]) / (tfs[j] - tfs[j - 1])
    return points[j - 1] + w * (points[j] - points[j - 1])
