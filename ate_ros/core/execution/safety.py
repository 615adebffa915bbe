"""The last line of defence: one control step limited in position, velocity and acceleration.

:func:`limit_step` moves a commanded point ``p`` (moving at ``v``) one step of ``h`` seconds
towards ``target`` (itself moving at ``v_ref``) such that, per joint,

- the new point is inside ``[lower, upper]``;
- ``|p_new - p| <= vmax * h`` (velocity);
- ``|v_new - v| <= amax * h`` (acceleration), and
- the joint can always still stop before a position limit (and before the target) with that
  acceleration: the braking bound below keeps the three constraints jointly feasible, so the
  acceleration limit is never sacrificed to the position limit while ``h`` stays constant.

Braking bound: with ``ds = amax h^2`` the velocity step per tick, a joint that moves ``s`` now and
then decelerates by ``ds`` per tick covers at most ``s + s^2/(2 ds) + s/2`` in total. The largest
``s`` keeping that within the distance ``d`` to a limit is
``ds * (-1.5 + sqrt(2.25 + 2 d / ds))``; a step of ``min(d, ds)`` is also safe (one more tick
stops it). If ``s_prev`` respected the bound, ``s_prev - ds`` respects it at the new distance, so
the bounds never cross.

Everything is vectorised over joints (D,) and costs a few microseconds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["brake_step", "limit_step"]


def brake_step(d: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Largest step (>= 0) towards a wall ``d`` away that still allows stopping before it."""
    d = np.maximum(d, 0.0)
    s = np.sqrt(2.25 + 2.0 * d / ds)
    s -= 1.5
    s *= ds
    return np.maximum(s, np.minimum(d, ds), out=s)


def limit_step(p: np.ndarray, v: np.ndarray, target: np.ndarray, v_ref: np.ndarray | float,
               h: float, lower: np.ndarray, upper: np.ndarray, vmax: np.ndarray,
               amax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One limited step of ``h`` seconds. Returns ``(p_new, v_new)``, both (D,).

    ``p`` must be inside the limits and ``|v| <= vmax`` (true for every output of this
    function). The tracking law is velocity feed-forward plus a braking-limited approach to
    ``target``, so a stationary target is reached without overshoot and a target moving within
    the limits is followed exactly.
    """
    ah = amax * h
    ds = ah * h
    # Gap to where the target is *now* (it moves v_ref * h during the step): closing it with
    # relative braking, on top of the feed-forward, lands exactly on a reachable target.
    e = target - p - v_ref * h
    # (3, D): distance to the target, to the upper and to the lower limit; one brake_step call
    # for all three because numpy's per-call overhead dominates at D ~ 7.
    s = brake_step(np.stack((np.abs(e), upper - p, p - lower)), ds) / h
    # Feed-forward plus the gap closed as fast as braking allows (never past the target).
    v_des = v_ref + np.copysign(s[0], e)
    hi = np.minimum(np.minimum(vmax, v + ah), s[1])
    lo = np.maximum(np.maximum(-vmax, v - ah), -s[2])
    v_new = np.minimum(np.maximum(v_des, lo), hi)
    # Priority if the bounds ever cross (h changed): velocity, then position, always hold.
    v_new = np.minimum(np.maximum(v_new, -vmax), vmax)
    p_new = np.minimum(np.maximum(p + v_new * h, lower), upper)
    return p_new, (p_new - p) / h
