"""Chunk scheduling: turn a stream of action chunks into safe, continuous per-tick commands.

Timing follows ``ate_ros.core.policy_contract``: ``chunk[i]`` is the target for
``obs_stamp + (i + 1) * dt``. The scheduler keeps a *plan* (times (N,), positions (N, D)) built
from accepted chunks, and every control tick :meth:`ChunkScheduler.command` returns the target
for the next tick, ``now + dt``, after :func:`~ate_ros.core.execution.safety.limit_step`. Because
that last step limits position, velocity and acceleration relative to the previous output, the
invariant holds whatever arrives: every returned point is finite, inside the joint limits and
within the velocity/acceleration limits of the point before it over the time between them (the
first relative to the measured state, at rest; ticks missed in between are replayed one by one).

All methods take ``now`` (seconds on the caller's clock: ROS time or sim time) and never read a
clock; the scheduler is deterministic and costs tens of microseconds per call.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.execution.config import ExecutionConfig
from ate_ros.core.execution.safety import limit_step

logger = logging.getLogger(__name__)

__all__ = ["REJECT_REASONS", "ChunkScheduler", "ExecutionStats", "SubmitResult"]

# Reasons submit() can reject a chunk for (keys of ExecutionStats.rejected).
REJECT_SHAPE = "shape"
REJECT_NON_FINITE = "non_finite"
REJECT_BAD_STAMP = "bad_stamp"
REJECT_BAD_STATE = "bad_state"
REJECT_START_DEVIATION = "start_deviation"
REJECT_STALE = "stale"
REJECT_REASONS = (REJECT_SHAPE, REJECT_NON_FINITE, REJECT_BAD_STAMP, REJECT_BAD_STATE,
                  REJECT_START_DEVIATION, REJECT_STALE)

_EPS = 1e-9

MAX_CATCH_UP_S = 1.0
"""Longest run of missed control ticks the scheduler replays (see ``ChunkScheduler._catch_up``);
after a longer stall the command moves on by one tick from where it was."""


@dataclass
class SubmitResult:
    """Outcome of :meth:`ChunkScheduler.submit`.

    Attributes:
        accepted: The chunk was merged into the plan.
        reason: Empty when accepted; otherwise one of :data:`REJECT_REASONS` plus details
            (``"start_deviation: joint j2 is 0.9 from measured (max 0.5)"``).
        clipped: Points changed by the position clamp or stepping faster than the velocity
            limit (the latter are slowed down at execution).
        dropped: Points dropped because their time had already passed.
        superseded: Points before the takeover index (``blend: rtc``) left to the current
            plan, which already covered their times.
    """

    accepted: bool
    reason: str = ""
    clipped: int = 0
    dropped: int = 0
    superseded: int = 0

    @property
    def code(self) -> str:
        """The reason's short code (``"stale"``), empty when accepted."""
        return self.reason.split(":", 1)[0]


@dataclass
class ExecutionStats:
    """Counters since construction (not cleared by :meth:`ChunkScheduler.reset`)."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REJECT_REASONS})
    clipped_points: int = 0
    dropped_points: int = 0
    watchdog_holds: int = 0
    stop_requests: int = 0
    """Empty chunks received: stop and hold where the robot is."""
    commands: int = 0
    limited_commands: int = 0
    """Commands the velocity/acceleration/position limiter changed by more than 1e-6."""
    missed_ticks: int = 0
    """Control ticks that came late and were replayed by the next command."""
    clock_resets: int = 0
    """Commands for a time before the previous one (the clock jumped back): state forgotten."""

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, int]:
        out = {"accepted": self.accepted, "rejected": self.rejected_total,
               "clipped_points": self.clipped_points, "dropped_points": self.dropped_points,
               "watchdog_holds": self.watchdog_holds, "stop_requests": self.stop_requests,
               "commands": self.commands,
               "limited_commands": self.limited_commands, "missed_ticks": self.missed_ticks,
               "clock_resets": self.clock_resets}
        out.update({f"rejected_{k}": v for k, v in self.rejected.items()})
        return out


class ChunkScheduler:
    """Safety checks, latency compensation, blending and watchdog for one embodiment.

    Args:
        embodiment: Joint order, limits and control period.
        config: Blending, watchdog and limit scaling.
    """

    def __init__(self, embodiment: Embodiment, config: ExecutionConfig | None = None) -> None:
        self.embodiment = embodiment
        self.dof = embodiment.dof
        self.dt = embodiment.control_period
        self._max_catch_up = max(int(MAX_CATCH_UP_S / self.dt), 1)
        self.stats = ExecutionStats()
        self.set_config(config or ExecutionConfig())
        self.reset()

    # ----- configuration ---------------------------------------------------------------------
    def set_config(self, config: ExecutionConfig) -> None:
        """Apply a new config (limits take effect at the next command; the plan is kept)."""
        self.config = config
        emb = self.embodiment
        self.lower = emb.lower
        self.upper = emb.upper
        self.vmax = emb.max_velocity * config.velocity_scale
        self.amax = emb.max_acceleration * config.acceleration_scale
        self.max_start_deviation = (emb.max_start_deviation if config.max_start_deviation is None
                                    else config.max_start_deviation)

    def reset(self) -> None:
        """Forget the plan and the commanded state (the next command starts from measured)."""
        d = self.dof
        self._times = np.empty(0)
        self._pos = np.empty((0, d))
        self._wsum = np.empty(0)  # ensemble: accumulated weight per planned point
        self._count = np.empty(0)  # ensemble: predictions merged into each point
        self._q: np.ndarray | None = None  # last commanded point
        self._v = np.zeros(d)  # its velocity
        self._t = -math.inf  # the time it is the target for
        self._last_now: float | None = None
        self._last_accept: float | None = None
        # The plan as of the last command: what the controller follows until the next one.
        self._sent_times, self._sent_pos = self._times, self._pos
        self._holding = True
        self._watchdog_expired = False
        self.tracking_error = 0.0

    # ----- state ------------------------------------------------------------------------------
    @property
    def holding(self) -> bool:
        """True when the last command held position (nothing planned or watchdog expired)."""
        return self._holding

    @property
    def moving(self) -> bool:
        """True while the last command's velocity is non-zero."""
        return bool(np.any(self._v != 0.0))

    @property
    def watchdog_expired(self) -> bool:
        return self._watchdog_expired

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._q is None else self._q.copy()

    @property
    def plan_end(self) -> float:
        """Time of the last planned point (-inf when nothing is planned)."""
        return float(self._times[-1]) if self._times.size else -math.inf

    def hold(self) -> None:
        """Drop the plan: from the next command on, stop (acceleration-limited) and hold."""
        self._clear_plan()

    def touch(self, now: float) -> None:
        """Feed the watchdog without a new chunk (a supervised ExecuteChunk goal is running)."""
        if self._times.size:
            self._last_accept = float(now)

    # ----- chunks -----------------------------------------------------------------------------
    def _reject(self, code: str, detail: str = "") -> SubmitResult:
        self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
        return SubmitResult(False, f"{code}: {detail}" if detail else code)

    def check_content(self, chunk: np.ndarray) -> SubmitResult | None:
        """The rejection of a chunk whose content is unusable (shape, NaN/inf; counted), else
        None. Checked first: a garbage chunk is reported as garbage whatever the robot's state."""
        try:
            c = np.array(chunk, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            return self._reject(REJECT_SHAPE, f"not a numeric array ({exc})")
        if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] != self.dof:
            return self._reject(REJECT_SHAPE, f"expected (H>=1, {self.dof}), got {c.shape}")
        if not np.isfinite(c).all():
            bad = int((~np.isfinite(c)).any(axis=1).sum())
            return self._reject(REJECT_NON_FINITE, f"{bad} point(s) contain NaN or inf")
        return None

    def submit(self, chunk: np.ndarray, obs_stamp: float, now: float,
               measured_q: np.ndarray, takeover: int = 0) -> SubmitResult:
        """Validate a chunk (H, D) in embodiment joint order and merge it into the plan.

        ``takeover`` (``blend: rtc``): the chunk index from which it replaces the plan. Its
        points before that were the committed prefix the sampler was given (they execute while
        it runs), so the current plan keeps those times; a chunk that arrives after its
        takeover time loses its past points to latency compensation as any chunk does. Other
        blend modes ignore it.
        """
        d = self.dof
        bad_content = self.check_content(chunk)
        if bad_content is not None:
            return bad_content
        c = np.array(chunk, dtype=np.float64)
        try:
            obs_stamp, now = float(obs_stamp), float(now)
        except (TypeError, ValueError):
            return self._reject(REJECT_BAD_STAMP, "stamps must be numbers")
        if not (math.isfinite(obs_stamp) and math.isfinite(now)):
            return self._reject(REJECT_BAD_STAMP, f"obs_stamp={obs_stamp}, now={now}")
        m = np.asarray(measured_q, dtype=np.float64)
        if m.shape != (d,) or not np.isfinite(m).all():
            return self._reject(REJECT_BAD_STATE, f"measured_q must be finite ({d},)")
        dev = np.abs(c[0] - m)
        over = dev > self.max_start_deviation
        if over.any():
            j = int(np.argmax(dev - self.max_start_deviation))
            return self._reject(
                REJECT_START_DEVIATION,
                f"joint {self.embodiment.joint_names[j]} first point is {dev[j]:.3f} from the "
                f"measured position (max {self.max_start_deviation:.3f})")

        h = c.shape[0]
        if self._last_now is not None and now >= self._last_now - _EPS:
            self._catch_up(now)  # the ticks missed so far ran the plan they had
        times = obs_stamp + self.dt * np.arange(1, h + 1)
        clamped = np.minimum(np.maximum(c, self.lower), self.upper)
        changed = (clamped != c).any(axis=1)
        dropped = 0
        if self.config.latency_compensation:
            keep = times > now + _EPS
            dropped = int(h - keep.sum())
            if dropped == h:
                self.stats.dropped_points += dropped
                age = now - obs_stamp
                return self._reject(
                    REJECT_STALE, f"all {h} points are in the past (observation {age:.3f} s "
                                  f"old, chunk covers {h * self.dt:.3f} s)")
            if dropped:
                times, clamped, changed = times[keep], clamped[keep], changed[keep]
        superseded = 0
        if self.config.blend == "rtc" and takeover > 0 and self._times.size:
            # Points before the takeover index whose times the current plan covers stay the
            # plan's (chunk index = position among the kept points + the points dropped).
            idx = np.arange(h - times.size, h)
            old_plan = (idx < int(takeover)) & (times <= self._times[-1] + _EPS)
            superseded = int(old_plan.sum())
            times, clamped, changed = times[~old_plan], clamped[~old_plan], changed[~old_plan]
        # Steps faster than the velocity limit between consecutive points get slowed down.
        if clamped.shape[0] > 1:
            fast = (np.abs(np.diff(clamped, axis=0)) > self.vmax * self.dt + _EPS).any(axis=1)
            changed[1:] |= fast
        clipped = int(changed.sum())

        if times.size:  # (rtc: a chunk wholly before its takeover leaves the plan as it is)
            self._merge(times, clamped, now)
        self._last_accept = now
        self._watchdog_expired = False
        self.stats.accepted += 1
        self.stats.clipped_points += clipped
        self.stats.dropped_points += dropped
        return SubmitResult(True, "", clipped, dropped, superseded)

    def _merge(self, times: np.ndarray, pos: np.ndarray, now: float) -> None:
        """Blend the new points with the current plan; the new chunk's times win from its start."""
        n = times.size
        wsum = np.ones(n)
        count = np.ones(n)
        ot, op = self._times, self._pos
        if ot.size and self.config.blend not in ("replace", "rtc"):
            # Old plan evaluated at the new times, where it covers them.
            inside = (times >= ot[0] - _EPS) & (times <= ot[-1] + _EPS)
            idx = np.nonzero(inside)[0]
            if idx.size:
                tt = times[idx]
                j = np.clip(np.searchsorted(ot, tt), 1, max(ot.size - 1, 1))
                if ot.size == 1:
                    old = np.repeat(op[:1], idx.size, axis=0)
                    near = np.zeros(idx.size, dtype=np.int64)
                else:
                    t0, t1 = ot[j - 1], ot[j]
                    a = np.clip((tt - t0) / (t1 - t0), 0.0, 1.0)[:, None]
                    old = op[j - 1] * (1.0 - a) + op[j] * a
                    near = np.where(a[:, 0] < 0.5, j - 1, j)
                if self.config.blend == "crossfade":
                    k = self.config.crossfade_steps
                    w = np.minimum((np.arange(idx.size) + 1.0) / (k + 1.0), 1.0)[:, None]
                    pos = pos.copy()
                    pos[idx] = old * (1.0 - w) + pos[idx] * w
                else:  # ensemble (ACT): k-th prediction for a time weighs exp(-m k)
                    w_old = self._wsum[near]
                    c_old = self._count[near]
                    w_new = np.exp(-self.config.ensemble_decay * c_old)
                    pos = pos.copy()
                    pos[idx] = (old * w_old[:, None] + pos[idx] * w_new[:, None]) / (
                        w_old + w_new)[:, None]
                    wsum[idx] = w_old + w_new
                    count[idx] = c_old + 1
        # Keep old points before the new chunk starts (and the one just before now, which
        # interpolation towards the first new point may need).
        if ot.size:
            keep = (ot < times[0] - _EPS) & (ot > now - self.dt)
            if keep.any():
                times = np.concatenate([ot[keep], times])
                pos = np.concatenate([op[keep], pos])
                wsum = np.concatenate([self._wsum[keep], wsum])
                count = np.concatenate([self._count[keep], count])
        self._times, self._pos, self._wsum, self._count = times, pos, wsum, count

    # ----- per tick ---------------------------------------------------------------------------
    def _target(self, t: float, times: np.ndarray, pos: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity of the plan (times, pos) at time t (linear between points,
        held after the end)."""
        i = int(np.searchsorted(times, t))
        if i >= times.size:
            return pos[-1], np.zeros(self.dof)
        if i == 0:
            if self._q is None or self._t >= times[0] - _EPS:
                return pos[0], np.zeros(self.dof)
            t0, p0 = self._t, self._q  # approach the first point from the current command
        else:
            t0, p0 = times[i - 1], pos[i - 1]
        t1, p1 = times[i], pos[i]
        span = t1 - t0
        a = (t - t0) / span
        return p0 + (p1 - p0) * a, (p1 - p0) / span

    def _start(self, measured_q: np.ndarray, now: float) -> None:
        m = np.asarray(measured_q, dtype=np.float64)
        if m.shape != (self.dof,) or not np.isfinite(m).all():
            raise ValueError(f"the first command() needs a finite measured_q of shape "
                             f"({self.dof},), got {m.shape}")
        self._q = np.clip(m, self.lower, self.upper)
        self._v = np.zeros(self.dof)
        self._t = now

    def command(self, now: float, measured_q: np.ndarray) -> np.ndarray:
        """The safe target (D,) for the tick after ``now`` (time ``now + dt``).

        Holds position (decelerating within the acceleration limit) when nothing is planned,
        the plan is exhausted, or no chunk was accepted for ``watchdog_timeout`` seconds.
        """
        now = float(now)
        if self._last_now is not None and now < self._last_now - _EPS:
            logger.warning("time went backwards (%.3f -> %.3f): resetting the executor",
                           self._last_now, now)
            self.stats.clock_resets += 1
            self.reset()
        if self._q is None:
            self._start(measured_q, now)
        self._last_now = now
        m = np.asarray(measured_q, dtype=np.float64)
        if m.shape == (self.dof,):
            err = float(np.max(np.abs(self._q - m)))
            if math.isfinite(err):
                self.tracking_error = err
        t_next = now + self.dt
        if t_next - self._t <= _EPS:  # already commanded for this tick
            return self._q.copy()

        if (self._last_accept is not None and self._times.size
                and now - self._last_accept > self.config.watchdog_timeout):
            logger.warning("no chunk for %.3f s (watchdog_timeout %.3f s): holding position",
                           now - self._last_accept, self.config.watchdog_timeout)
            self._clear_plan()
            self._watchdog_expired = True
            self.stats.watchdog_holds += 1
        self._catch_up(now)
        h = min(t_next - self._t, self.dt)  # beyond the catch-up limit: one step
        q, target = self._step(t_next, h, self._times, self._pos)
        self._prune(t_next)
        self._sent_times, self._sent_pos = self._times, self._pos
        self.stats.commands += 1
        if np.max(np.abs(q - target)) > 1e-6 and not self._holding:
            self.stats.limited_commands += 1
        return q.copy()

    def _catch_up(self, now: float) -> None:
        """Replay the ticks the caller missed before ``now`` (a stalled process, a late timer).

        The controller kept following what it was last sent (planned() on the tick grid), with
        the plan as of the last command: chunks merged since then (on a multi-threaded executor
        they arrive while the tick is held up) never reached it, so the ticks are replayed with
        the sent plan, not the current one. The command then continues from where that
        trajectory is now: stepping once would leave it behind the arm, and the next trajectory
        would pull the arm back. Called by :meth:`command` and by :meth:`submit`. Jitter under
        half a tick is left to the single step of :meth:`command`.
        """
        if self._q is None:
            return
        missed = 0
        while now + self.dt - self._t > 1.5 * self.dt and missed < self._max_catch_up:
            self._step(self._t + self.dt, self.dt, self._sent_times, self._sent_pos)
            missed += 1
        self.stats.missed_ticks += missed

    def _step(self, t_next: float, h: float, times: np.ndarray, pos: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Advance the command along the plan (times, pos) to ``t_next`` (``h`` seconds after
        the last one, at most dt).

        Returns the new command and the plan's target it was limited from.
        """
        if times.size:
            target, v_ref = self._target(t_next, times, pos)
            self._holding = t_next > times[-1] + _EPS
        else:
            target, v_ref = self._q, 0.0
            self._holding = True
        q, v = limit_step(self._q, self._v, target, v_ref, h, self.lower, self.upper,
                          self.vmax, self.amax)
        self._q, self._v, self._t = q, v, t_next
        return q, target

    def _prune(self, t_next: float) -> None:
        """Drop planned points no longer needed for interpolation (keep the one before t_next)."""
        i = int(np.searchsorted(self._times, t_next)) - 1
        if i > 0:
            self._times, self._pos = self._times[i:], self._pos[i:]
            self._wsum, self._count = self._wsum[i:], self._count[i:]

    def _clear_plan(self) -> None:
        self._times = np.empty(0)
        self._pos = np.empty((0, self.dof))
        self._wsum = np.empty(0)
        self._count = np.empty(0)

    def needs_chunk(self, now: float) -> bool:
        """True when fewer than ``replan_steps`` planned points lie after ``now``."""
        remaining = self._times.size - int(np.searchsorted(self._times, now, side="right"))
        return remaining < max(self.config.replan_steps, 1)

    def remaining(self, now: float) -> int:
        """Planned points after ``now``."""
        return self._times.size - int(np.searchsorted(self._times, now, side="right"))

    def planned(self, now: float, max_points: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Future commanded points if no new chunk arrives: times (N,), positions (N, D).

        Starts with the last commanded point (when it lies after ``now``) and continues on the
        control-tick grid through the same limiter as :meth:`command`, so every point respects
        the limits relative to the one before it. Empty before the first command.
        """
        if self._q is None:
            return np.empty(0), np.empty((0, self.dof))
        dt = self.dt
        if self._times.size:
            steps = int(math.ceil((self._times[-1] - self._t) / dt - _EPS)) + 1
        else:
            steps = 0
        # Enough ticks to come to rest after the plan (or at once when holding).
        stop = int(math.ceil(float(np.max(np.abs(self._v) / (self.amax * dt))) - _EPS)) + 1
        steps = max(steps, 0) + (stop if np.any(self._v != 0) else 0)
        cap = max_points if max_points is not None else 100000
        ts = [self._t]
        qs = [self._q]
        q, v, t = self._q, self._v, self._t
        while len(ts) <= steps and len(ts) < cap + 1:
            t_next = t + dt
            if self._times.size:
                saved = self._q, self._t
                self._q, self._t = q, t  # _target anchors on the (simulated) last command
                target, v_ref = self._target(t_next, self._times, self._pos)
                self._q, self._t = saved
            else:
                target, v_ref = q, 0.0
            q, v = limit_step(q, v, target, v_ref, dt, self.lower, self.upper, self.vmax,
                              self.amax)
            t = t_next
            ts.append(t)
            qs.append(q)
        times = np.asarray(ts)
        pos = np.asarray(qs)
        keep = times > now + _EPS
        if not keep.any():  # holding, last command already due: hold it one tick ahead
            return np.array([now + dt]), pos[-1:].copy()
        times, pos = times[keep], pos[keep]
        if max_points is not None:
            times, pos = times[:max_points], pos[:max_points]
        return times, pos
