"""The executor's decisions, ROS-free: what executor_node sends each control tick, and why.

:class:`ChunkExecutor` wraps a :class:`~ate_ros.core.execution.scheduler.ChunkScheduler` with the
state around it: the measured joints and their age, the running supervised goal (ExecuteChunk),
and the bookkeeping of FollowJointTrajectory goals. Every method takes ``now`` (seconds on the
caller's clock) and never reads a clock, so a test drives it tick by tick:

    ex = ChunkExecutor(embodiment, ExecutorNodeConfig(), goals=True)
    ex.observe(0.0, q0)
    ex.submit(chunk, obs_stamp=0.0, now=0.0)
    d = ex.step(0.0)          # d.output is Output.GOAL: send d.times / d.positions now
    seq = ex.goal_sent()      # the node sent it (FollowJointTrajectory)

:meth:`ChunkExecutor.step` decides, per tick: hold when joint_states went stale, start again from
the robot when it does not follow the commands (``max_tracking_error``), the next command,
whether to stream it (controller topic or dry run), to send a FollowJointTrajectory goal (a new
chunk was accepted, the plan was just dropped and the controller must brake, or the executor came
to rest), or to send nothing (a running goal already holds this tick, or the same hold was
already sent); and the running ExecuteChunk goal's feedback and end. Not thread-safe: the node
calls it under one lock.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import math
from dataclasses import dataclass, field

import numpy as np

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.execution.config import ExecutorNodeConfig
from ate_ros.core.execution.goals import GoalEnd, GoalOutcome
from ate_ros.core.execution.scheduler import (
    REJECT_BAD_STATE,
    ChunkScheduler,
    ExecutionStats,
    SubmitResult,
)
from ate_ros.core.execution.tracking import STAMP_SKEW, TrackingCheck

__all__ = ["FJT_FAILURE_CODES", "FJT_MAX_SECONDS", "ChunkExecutor", "Output", "SupervisedChunk",
           "TickDecision"]

FJT_MAX_SECONDS = 60.0
"""Longest FollowJointTrajectory goal: the simulated commands stop there even if not at rest."""

FJT_FAILURE_CODES = frozenset({-2, -3, -4, -5})
"""FollowJointTrajectory.Result error codes of a goal the controller failed (INVALID_JOINTS,
OLD_HEADER_TIMESTAMP, PATH_TOLERANCE_VIOLATED, GOAL_TOLERANCE_VIOLATED).
joint_trajectory_controller ends a goal that a newer one replaced with INVALID_GOAL (-1),
"Current goal cancelled due to new incoming action"."""

_EPS = 1e-9


class Output(enum.Enum):
    """Where a tick's trajectory goes."""

    NONE = "none"  # nothing this tick
    STREAM = "stream"  # <controller>/joint_trajectory
    DRY_RUN = "dry_run"  # ~/dry_run_trajectory only
    GOAL = "goal"  # a FollowJointTrajectory goal that holds every command until rest


@dataclass
class SupervisedChunk:
    """Book-keeping of the running ExecuteChunk goal."""

    obs_stamp: float
    length: int
    end_time: float
    clipped: int
    executed: int = 0
    max_error: float = 0.0


@dataclass
class TickDecision:
    """What one control tick does.

    Attributes:
        now: The tick's time.
        output: Where ``times``/``positions`` go (nothing with :attr:`Output.NONE`).
        times: Absolute times (N,) of the points to send; the first is ``now + dt``.
        positions: (N, D) in embodiment joint order.
        command: The committed point for ``now + dt``; None before any joint_states.
        motion: A goal that moves (not a plain hold): its failure restarts from the robot.
        holding: The command holds position (nothing planned, watchdog, stop).
        watchdog_expired: No chunk for ``watchdog_timeout``.
        went_stale: joint_states turned stale at this tick: the executor started holding.
        not_following: Why the executor concluded at this tick that the robot does not follow
            its commands (it dropped the plan and holds where the robot is); "" otherwise.
        tracking_error: Largest |command - measured| joint position.
        goal: The ExecuteChunk goal this tick executed (its ``feedback``).
        feedback: (index in the chunk, tracking error) for ``goal``.
        ended: Goals that ended at this tick.
    """

    now: float
    output: Output = Output.NONE
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    positions: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    command: np.ndarray | None = None
    motion: bool = False
    holding: bool = True
    watchdog_expired: bool = False
    went_stale: bool = False
    not_following: str = ""
    tracking_error: float = 0.0
    goal: SupervisedChunk | None = None
    feedback: tuple[int, float] | None = None
    ended: list[GoalEnd] = field(default_factory=list)


class ChunkExecutor:
    """Safety, scheduling and output decisions for one embodiment. See the module docstring.

    Args:
        embodiment: Joints, limits and control rate.
        config: The node's parameters (``dry_run``, ``stream_horizon``, ``state_timeout``,
            ``execution``).
        goals: Output by FollowJointTrajectory goals instead of streaming the topic.
    """

    def __init__(self, embodiment: Embodiment, config: ExecutorNodeConfig,
                 goals: bool = False) -> None:
        self.embodiment = embodiment
        self.config = config
        self.goals = goals
        self.dt = embodiment.control_period
        self.scheduler = ChunkScheduler(embodiment, config.execution)
        self.counts: collections.Counter[str] = collections.Counter()
        """``trajectories_sent``, ``tracking_checks``, ``tracking_resets`` and
        ``fjt_goals_<sent|succeeded|preempted|rejected|aborted|canceled|unsent>`` (for
        /diagnostics)."""
        self.last_error = ""
        self.measured: np.ndarray | None = None
        self.measured_at = -math.inf
        self.measured_stamp: float | None = None  # when measured (header.stamp), if usable
        self.tracking = TrackingCheck(embodiment.joint_names)
        self.goal: SupervisedChunk | None = None
        self._ended: list[GoalEnd] = []  # ended since the last take_ended()
        self._last_hold_sent: np.ndarray | None = None
        self._new_chunk = False  # a chunk was accepted since the last tick
        self._plan_dropped = True  # the scheduler has no plan (braking is due when it drops)
        self._fjt_seq = 0  # number of the latest FollowJointTrajectory goal sent
        self.stopped = False

    @property
    def stats(self) -> ExecutionStats:
        return self.scheduler.stats

    def set_config(self, config: ExecutorNodeConfig) -> None:
        """Run-time parameter changes (limits and blending apply at the next command)."""
        self.config = config
        self.scheduler.set_config(config.execution)

    def restart(self) -> None:
        """Forget the commanded state and the plan: the next command starts from the measured
        state (the robot may have been moved while nothing was commanded)."""
        self.scheduler.reset()
        self._last_hold_sent = None
        self._new_chunk = False
        self._plan_dropped = True
        self.stopped = False

    # ----- inputs -----------------------------------------------------------------------------
    def observe(self, now: float, q: np.ndarray, stamp: float | None = None) -> None:
        """Measured joint positions (D,) in embodiment order, received at ``now``; ``stamp``:
        when they were measured (``header.stamp``; None or 0 when unknown). A stamp ahead of
        ``now`` by more than :data:`STAMP_SKEW` is on another clock and is not used."""
        self.measured = np.asarray(q, dtype=np.float64)
        self.measured_at = float(now)
        usable = stamp is not None and math.isfinite(stamp) and 0 < stamp <= now + STAMP_SKEW
        self.measured_stamp = float(stamp) if usable else None

    def state_fresh(self, now: float) -> bool:
        return self.measured is not None and now - self.measured_at <= self.config.state_timeout

    def submit(self, chunk: np.ndarray, obs_stamp: float, now: float,
               takeover: int = 0) -> SubmitResult:
        """Merge a chunk (H, D) from the topic; an accepted one takes over from a running goal
        (see :meth:`take_ended`). ``takeover``: its plan index for ``blend: rtc``."""
        r = self._submit(chunk, obs_stamp, now, takeover)
        if r.accepted:
            self._end_goal(GoalOutcome.PREEMPTED, "preempted by action_chunk")
        return r

    def _submit(self, chunk: np.ndarray, obs_stamp: float, now: float,
                takeover: int = 0) -> SubmitResult:
        if self.stopped:
            return SubmitResult(False, "stopped: the executor is not running")
        bad_content = self.scheduler.check_content(chunk)
        if bad_content is not None:
            return bad_content
        if not self.state_fresh(now):
            self.stats.rejected[REJECT_BAD_STATE] += 1
            return SubmitResult(False, f"{REJECT_BAD_STATE}: no recent joint_states")
        r = self.scheduler.submit(chunk, obs_stamp, now, self.measured, takeover)
        if r.accepted:
            self._new_chunk = True
        return r

    def stop_request(self) -> None:
        """An empty chunk: drop the plan and hold where the robot is now, not at a point the
        producer saw a while ago (which the arm would first return to)."""
        self.scheduler.hold()
        self.stats.stop_requests += 1
        self._end_goal(GoalOutcome.PREEMPTED, "stopped by action_chunk")

    # ----- supervised goal (ExecuteChunk) -----------------------------------------------------
    def start_goal(self, chunk: np.ndarray, obs_stamp: float, now: float
                   ) -> tuple[SubmitResult, SupervisedChunk | None]:
        """A new ExecuteChunk goal: it preempts the running one, then its chunk is submitted.

        Returns the submit result and, when accepted, the new goal's bookkeeping.
        """
        self._end_goal(GoalOutcome.PREEMPTED, "preempted by a new goal")
        r = self._submit(chunk, obs_stamp, now)
        if not r.accepted:
            return r, None
        n = int(np.shape(chunk)[0])
        self.goal = SupervisedChunk(obs_stamp=float(obs_stamp), length=n,
                                    end_time=float(obs_stamp) + n * self.dt, clipped=r.clipped)
        return r, self.goal

    def cancel_goal(self, goal: SupervisedChunk) -> None:
        """A cancel of ``goal`` was accepted: hold (unless something newer took over), end it."""
        if self.goal is goal:
            self.scheduler.hold()
            self._end_goal(GoalOutcome.CANCELED, "canceled: holding")

    def stop(self, message: str = "executor shutting down") -> None:
        """Stop commanding: hold, refuse chunks, abort the running goal."""
        self.stopped = True
        self.scheduler.hold()
        self._end_goal(GoalOutcome.ABORTED, message)

    def take_ended(self) -> list[GoalEnd]:
        """Goals ended since the last call (by a chunk, a stop, a cancel or a failed goal)."""
        ended, self._ended = self._ended, []
        return ended

    def _end_goal(self, outcome: GoalOutcome, message: str) -> None:
        if self.goal is not None:
            self._ended.append(GoalEnd(self.goal, outcome, message))
            self.goal = None

    # ----- control tick -----------------------------------------------------------------------
    def step(self, now: float) -> TickDecision:
        """One control tick at ``now``: the command for ``now + dt`` and what to send."""
        d = TickDecision(now=now)
        if self.measured is None:
            d.ended = self.take_ended()
            return d  # nothing known about the robot yet: send nothing
        s = self.scheduler
        if not self.state_fresh(now):
            if not s.holding:
                s.hold()
                d.went_stale = True
        elif off := self._not_following():
            # The plan continues from commands the robot never followed: the next command
            # would start where the robot is not. Start again from where it is.
            self._drop_unfollowed_plan(f"the robot does not follow: {off}")
            self.counts["tracking_resets"] += 1
            d.not_following = off
        goal = self.goal
        if goal is not None:
            s.touch(now)
        if s.last_command is None:  # the commands start again from the measured state
            self.tracking.clear()
        q = s.command(now, self.measured)
        self.tracking.record(now + self.dt, q,
                             keep=self.config.state_timeout + self.config.tracking_lag + 1.0)
        times, pos = s.planned(now, max_points=self.config.stream_horizon)
        at_rest = s.holding and not s.moving
        new_chunk, self._new_chunk = self._new_chunk, False
        # The plan was just dropped (watchdog, stale joint_states, cancel): a controller running
        # a FollowJointTrajectory goal must get the braking trajectory now, not at rest.
        dropped = not math.isfinite(s.plan_end)
        brake = dropped and not self._plan_dropped
        self._plan_dropped = dropped
        dry = self.config.dry_run
        send_goal = self.goals and not dry and (new_chunk or brake or at_rest)
        if send_goal:  # a goal is not streamed again: it must hold every command until rest
            times, pos = self.plan_to_rest(now, q)
        d.command, d.holding, d.motion = q, s.holding, not at_rest
        d.watchdog_expired, d.tracking_error = s.watchdog_expired, s.tracking_error
        if goal is not None:
            self._update_goal(goal, d)
        d.ended = self.take_ended()
        # Skip repeated identical holds once the robot is at rest.
        if at_rest:
            if self._last_hold_sent is not None and np.array_equal(self._last_hold_sent, q):
                return d
            self._last_hold_sent = q.copy()
        else:
            self._last_hold_sent = None
        if dry:
            d.output = Output.DRY_RUN
        elif send_goal:
            d.output = Output.GOAL
        elif not self.goals:
            d.output = Output.STREAM
        else:
            return d  # FollowJointTrajectory: the running goal already holds this tick
        d.times, d.positions = times, pos
        self.counts["trajectories_sent"] += 1
        return d

    def _not_following(self) -> str:
        cfg = self.config
        if (self.measured_stamp is None or cfg.dry_run or self.stopped
                or not cfg.max_tracking_error > 0):
            return ""
        verdict = self.tracking.check(self.measured_stamp, self.measured, self.scheduler.vmax,
                                      cfg.max_tracking_error, cfg.tracking_lag)
        if verdict is None:  # measured before the commands kept (a restart, another clock)
            return ""
        self.counts["tracking_checks"] += 1
        return verdict

    def brake(self, now: float) -> TickDecision:
        """Hold now and send every command until rest (deactivation: the last output).

        The controller keeps following the last trajectory it got, planned points included, so
        stopping the output without this would let it run on.
        """
        self.scheduler.hold()
        self._end_goal(GoalOutcome.ABORTED, "executor deactivated")
        d = self.step(now)
        if d.command is None:
            return d
        if d.output is Output.NONE:
            self.counts["trajectories_sent"] += 1
        d.times, d.positions = self.plan_to_rest(now, d.command)
        d.output = (Output.DRY_RUN if self.config.dry_run
                    else Output.GOAL if self.goals else Output.STREAM)
        return d

    def _update_goal(self, goal: SupervisedChunk, d: TickDecision) -> None:
        t_next = d.now + self.dt
        index = int(min(max(round((t_next - goal.obs_stamp) / self.dt) - 1, 0),
                        goal.length - 1))
        goal.executed += 1
        goal.max_error = max(goal.max_error, d.tracking_error)
        d.goal, d.feedback = goal, (index, float(d.tracking_error))
        if t_next >= goal.end_time - _EPS:
            self._end_goal(GoalOutcome.SUCCEEDED, "executed")

    def plan_to_rest(self, now: float, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every command from the one just given (``q``, due at ``now + dt``) until rest.

        Runs a copy of the scheduler over future ticks, as if no new chunk arrived, so a goal
        holds exactly what this executor would stream (limits included) and ends at rest. The
        watchdog is left out of the copy: when it fires, :meth:`step` sends the braking goal.
        """
        sim = copy.copy(self.scheduler)  # its methods replace arrays, never modify them
        sim.stats = ExecutionStats()
        sim.config = dataclasses.replace(sim.config, watchdog_timeout=math.inf)
        t = now
        times, pos = [now + self.dt], [q]
        for _ in range(int(FJT_MAX_SECONDS / self.dt)):
            if sim.holding and not sim.moving:
                break
            t += self.dt
            pos.append(sim.command(t, pos[-1]))
            times.append(t + self.dt)
        return np.asarray(times), np.asarray(pos)

    # ----- FollowJointTrajectory goals --------------------------------------------------------
    def goal_sent(self) -> int:
        """The node sent the tick's FollowJointTrajectory goal; returns its number."""
        self._fjt_seq += 1
        self.counts["fjt_goals_sent"] += 1
        return self._fjt_seq

    @property
    def latest_goal(self) -> int:
        """Number of the latest FollowJointTrajectory goal sent (0: none yet)."""
        return self._fjt_seq

    def goal_result(self, seq: int, motion: bool, succeeded: bool, kind: str = "aborted",
                    detail: str = "", error_code: int | None = None) -> str:
        """The controller's result of goal ``seq``; returns a warning for the log, or "".

        An older goal that ended unsuccessfully was replaced by our next one (preempted), unless
        its ``error_code`` says the controller failed it (:data:`FJT_FAILURE_CODES`): results
        travel separately from goal responses, so an abort can arrive after later goals were
        sent from the failed plan's commands. Any other unsuccessful end is a failure
        (:meth:`goal_failed`).
        """
        if succeeded:
            self.counts["fjt_goals_succeeded"] += 1
            return ""
        if seq != self._fjt_seq and error_code not in FJT_FAILURE_CODES:
            self.counts["fjt_goals_preempted"] += 1
            return ""
        return self.goal_failed(seq, motion, kind, detail)

    def goal_failed(self, seq: int, motion: bool, kind: str, detail: str) -> str:
        """Goal ``seq`` was rejected, aborted or canceled, or its result never came.

        The controller does not run our plan (after an abort it holds, after a rejection it keeps
        its previous goal). Every goal sent after a motion goal continues that plan's commands,
        so the failure of any motion goal drops the plan and the next command starts from the
        measured state: no later goal starts where the robot never got to. The running
        ExecuteChunk goal is aborted (:meth:`take_ended`). Returns the warning.
        """
        self.counts[f"fjt_goals_{kind}"] += 1
        self.last_error = f"goal {seq}: {detail}"
        if motion:
            self._drop_unfollowed_plan(f"FollowJointTrajectory goal {detail}")
        return f"FollowJointTrajectory goal {seq} {detail}"

    def goal_unsent(self, motion: bool, detail: str) -> str:
        """The tick's goal could not be sent (no action server): the controller never got it.

        :meth:`step` already moved its commands on as if it had, and the ticks after it send
        nothing while the goal would run; the next goal would then start from commands the
        robot never followed. So an unsent motion goal drops the plan, as a failed one does.
        An unsent hold changes nothing: the controller keeps the goal it has. Returns the
        warning.
        """
        self.counts["fjt_goals_unsent"] += 1
        self.last_error = f"goal not sent: {detail}"
        if motion:
            self._drop_unfollowed_plan(f"FollowJointTrajectory goal not sent: {detail}")
        return f"FollowJointTrajectory goal not sent: {detail}"

    def _drop_unfollowed_plan(self, message: str) -> None:
        """The robot does not follow the plan: restart from the measured state."""
        if self.stopped:
            return
        self.scheduler.reset()
        self.tracking.clear()
        self._last_hold_sent = None
        self._end_goal(GoalOutcome.ABORTED, message)

    def diagnostics(self) -> dict[str, object]:
        """Scheduler counters, output counts and the last goal error."""
        out: dict[str, object] = dict(self.stats.as_dict())
        out.update(self.counts)
        if self.last_error:
            out["fjt_last_error"] = self.last_error
        return out
