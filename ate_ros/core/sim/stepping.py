"""How a simulated robot advances time, ROS-free: wall-paced real time or graph-paced lock-step.

:class:`SimStepper` is sim_robot_node's simulation thread without its ROS calls: the node is
the :class:`StepperHost` (it publishes /clock, joint_states, cameras and task success, and owns
the commanded trajectory), the stepper decides when time advances, by how much, when the state
and camera frames are due, and when the episode is over.

Real time (:meth:`SimStepper.run_realtime`): each tick, every ``tick_period`` of wall time,
advances the simulation by ``real_time_factor * tick_period`` sim seconds in sub-steps of at
most ``MAX_SUBSTEP`` (the commanded target is sampled before each), a fixed step: an overloaded
machine slows sim time down rather than skipping physics; a tick more than a second late
restarts the pacing instead of catching up.

Lock-step (:meth:`SimStepper.run_lockstep`): one control period per iteration, each only after
its observation, chunk and command went through the graph (see :meth:`SimStepper.lockstep_tick`),
which reproduces :func:`ate_ros.core.sim.evaluate.evaluate_policy`'s loop. A wait gives up
after ``lockstep_timeout`` wall seconds (counted in :attr:`SimStepper.lockstep_waits`).

All wall time is read from a :class:`Clock` (tests pass a stepped one); ``config`` is read at
every tick, so run-time parameter sets apply at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

__all__ = ["MAX_SUBSTEP", "Clock", "InProcessExecutor", "SimStepper", "StepperHost",
           "SteppingConfig", "WallClock"]

MAX_SUBSTEP = 0.01
"""Sim seconds between trajectory samples (targets are updated at 100 Hz of sim time)."""
EPS = 1e-9


class SteppingConfig(Protocol):
    """The settings the stepper reads (:class:`ate_ros.core.deploy.SimRobotConfig` has them)."""

    tick_period: float  # wall seconds per real-time tick
    real_time_factor: float  # sim seconds per wall second
    joint_state_rate_hz: float  # sim time
    camera_rate_hz: float  # sim time
    lockstep_timeout: float  # wall seconds a lock-step wait gives up after
    max_duration: float  # sim seconds of an episode (0: unlimited)


class Clock(Protocol):
    """Wall time for pacing and time-outs."""

    def now(self) -> float:
        """Seconds (monotonic)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or less, when the stepper is stopped)."""

    def wait(self, cv: threading.Condition, timeout: float) -> None:
        """Wait on ``cv`` (held) for a notification, ``timeout`` seconds at most."""


class WallClock:
    """The monotonic clock; :meth:`sleep` returns early once ``stop`` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def wait(self, cv: threading.Condition, timeout: float) -> None:
        cv.wait(timeout)


class StepperHost(Protocol):
    """What the stepper asks of the robot it steps (sim_robot_node's ROS calls)."""

    def ok(self) -> bool:
        """The host still runs (e.g. its ROS context is not shut down)."""

    def now_ns(self) -> int:
        """The ROS time of the simulation's now (the episode's time base + sim time)."""

    def target(self) -> np.ndarray:
        """The commanded joint target at the ROS time of now."""

    def publish_clock(self, stamp_ns: int) -> None: ...

    def publish_state(self, images: bool, stamp_ns: int) -> None:
        """The environment state and joint_states (and camera frames when ``images``)."""

    def check_success(self) -> None:
        """Publish the task's success when it changed."""


class InProcessExecutor(Protocol):
    """The executor, asked directly when both run in one process (``ate-ros run --lockstep``):
    :class:`ate_ros.nodes.executor_node.ExecutorNode` has these."""

    def needs_chunk(self, now: float) -> bool:
        """Whether the executor's plan runs low at ROS time ``now`` (a chunk is due)."""

    def chunks_handled(self) -> int:
        """Chunks the executor accepted or rejected so far."""

    def command_state(self) -> tuple[int, bool]:
        """Commands sent so far, and whether it holds at rest (it then sends nothing new)."""


class SimStepper:
    """The simulation thread's protocol (see the module docstring).

    Args:
        env: The simulation (:class:`ate_ros.core.sim.env.SimEnv`: ``time``, ``advance``,
            ``set_targets``, ``step``, ``done``, ``target``).
        host: The robot's outputs and commanded target.
        config: Returns the current settings (read at every tick).
        clock: Wall time (default: the monotonic clock, interrupted by :meth:`stop`).
    """

    def __init__(self, env: Any, host: StepperHost, config: Callable[[], SteppingConfig],
                 clock: Clock | None = None) -> None:
        self.env = env
        self.host = host
        self.config = config
        self._stop = threading.Event()
        self.clock: Clock = clock if clock is not None else WallClock(self._stop)
        self.started = threading.Event()
        self.paused = threading.Event()
        self.episode_over = threading.Event()
        self.executor: InProcessExecutor | None = None  # lock-step in one process
        self.lockstep_waits = 0  # lock-step waits that gave up after lockstep_timeout
        self.next_js = 0.0  # sim time the next joint_states is due
        self.next_cam = 0.0  # sim time the next camera frames are due
        self.sim0 = env.time  # sim and wall time at the episode's start
        self.wall0 = self.clock.now()
        # Lock-step book-keeping: newest chunk / command stamps seen (ns), woken on arrival.
        self._cv = threading.Condition()
        self._chunk_ns = -1
        self._cmd_ns = -1
        self._step_target: np.ndarray | None = None

    # ----- control ------------------------------------------------------------------------
    def start(self) -> None:
        """Start ticking from now (idempotent)."""
        if self.started.is_set():
            return
        self.sim0 = self.env.time
        self.wall0 = self.clock.now()
        self.started.set()

    def pause(self) -> None:
        """Stop advancing simulated time (the episode is over)."""
        self.paused.set()
        self._notify()

    def stop(self) -> None:
        """End :meth:`run` (idempotent)."""
        self._stop.set()
        self._notify()

    def running(self) -> bool:
        return not self._stop.is_set() and self.host.ok()

    def halted(self) -> bool:
        """Paused, or ``max_duration`` of sim time has passed since the start."""
        cfg = self.config()
        return self.paused.is_set() or (
            cfg.max_duration > 0 and self.env.time - self.sim0 >= cfg.max_duration - EPS)

    def measured_real_time_factor(self) -> float:
        """Sim seconds per wall second since the start (0 before any wall time passed)."""
        wall = self.clock.now() - self.wall0
        return (self.env.time - self.sim0) / wall if wall > 0 else 0.0

    def run(self, lockstep: bool, poll: float = 0.05) -> None:
        """Wait for :meth:`start`, then tick until stopped (lock-step or real time)."""
        while not self.started.wait(poll):
            if not self.running():
                return
        if lockstep:
            self.run_lockstep()
        else:
            self.run_realtime()

    # ----- outputs ------------------------------------------------------------------------
    def publish_state(self, images: bool, stamp_ns: int) -> None:
        """The host's state (and frames), and when the next ones are due (sim time)."""
        t = self.env.time
        self.host.publish_state(images, stamp_ns)
        cfg = self.config()
        self.next_js = t + 1.0 / cfg.joint_state_rate_hz
        if images:
            self.next_cam = t + 1.0 / cfg.camera_rate_hz

    # ----- real time ----------------------------------------------------------------------
    def run_realtime(self) -> None:
        """Tick at ``tick_period`` of wall time until stopped."""
        self.host.publish_clock(self.host.now_ns())
        self.publish_state(images=True, stamp_ns=self.host.now_ns())
        next_tick = self.clock.now()
        while self.running():
            next_tick += self.config().tick_period
            self.realtime_tick()
            delay = next_tick - self.clock.now()
            if delay < -1.0:  # far behind (overloaded machine): do not try to catch up
                next_tick = self.clock.now()
            self.clock.sleep(max(0.0, delay))

    def realtime_tick(self) -> None:
        """Advance ``real_time_factor * tick_period`` sim seconds, publish what is due."""
        cfg = self.config()
        if self.halted():
            self.episode_over.set()
            return
        remaining = cfg.real_time_factor * cfg.tick_period
        while remaining > EPS:
            step = min(MAX_SUBSTEP, remaining)
            self.env.set_targets(self.host.target())
            self.env.advance(step)
            remaining -= step
        now_ns = self.host.now_ns()
        self.host.publish_clock(now_ns)
        t = self.env.time
        images = t + EPS >= self.next_cam
        if t + EPS >= self.next_js or images:
            self.publish_state(images, now_ns)
        self.host.check_success()

    # ----- lock-step ----------------------------------------------------------------------
    def chunk_arrived(self, stamp_ns: int) -> None:
        """A chunk stamped ``stamp_ns`` went out (lock-step waits for the tick's chunk)."""
        with self._cv:
            self._chunk_ns = max(self._chunk_ns, stamp_ns)
            self._cv.notify_all()

    def command_arrived(self, stamp_ns: int, times: np.ndarray, positions: np.ndarray) -> None:
        """A trajectory command stamped ``stamp_ns`` (points at ``times`` after it, (H,), of
        ``positions``, (H, D)).

        The target of the tick at the stamp is its first point after the stamp (the executor's
        target for the end of the control period), held for the period.
        """
        future = np.nonzero(np.asarray(times) > EPS)[0]
        target = np.array(positions[future[0] if future.size else -1], dtype=np.float64)
        with self._cv:
            self._step_target = target
            self._cmd_ns = max(self._cmd_ns, stamp_ns)
            self._cv.notify_all()

    def run_lockstep(self) -> None:
        """One control period per iteration until stopped; idle once the episode is over."""
        while self.running():
            if self.env.done() or self.halted():
                self.host.check_success()
                self.episode_over.set()
                self.clock.sleep(0.05)
                continue
            self.lockstep_tick()

    def lockstep_tick(self) -> None:
        """One control period, only after its observation, chunk and command.

        Per tick at ROS time T: /clock T-1ns; joint_states (+ images when an observation is due)
        stamped T; wait for the chunk stamped T (and, in-process, for the executor to have
        handled it); /clock T (the executor's control tick fires and commands); wait for the
        command stamped T; step the simulation one control period holding that target.
        """
        env, host, ex = self.env, self.host, self.executor
        now_ns = host.now_ns()
        host.publish_clock(now_ns - 1)  # stamps of this tick are "now" for the graph
        due = (ex.needs_chunk(now_ns * 1e-9) if ex is not None
               else env.time + EPS >= self.next_cam)
        handled0 = ex.chunks_handled() if ex is not None else 0
        self.publish_state(images=due, stamp_ns=now_ns)
        if due:
            ok = self.wait(lambda: self._chunk_ns >= now_ns)
            if ok and ex is not None:
                # Not notified: poll the (in-process) executor's counter.
                ok = self.wait(lambda: ex.chunks_handled() > handled0, poll=0.0005)
            elif ok:
                self.clock.sleep(0.005)  # let the executor take the chunk before its tick
            if not ok:
                self.lockstep_waits += 1
        ticks0 = ex.command_state()[0] if ex is not None else 0
        host.publish_clock(now_ns)
        if not self._wait_command(now_ns, ticks0):
            self.lockstep_waits += 1  # no command: keep the target
        with self._cv:
            target = self._step_target
        env.step(env.target if target is None else target, render=False)
        host.check_success()

    def wait(self, ready: Callable[[], bool], poll: float = 0.05) -> bool:
        """Wait (``lockstep_timeout`` wall seconds at most) until ``ready()``; False on
        timeout, stop or pause."""
        end = self.clock.now() + self.config().lockstep_timeout
        with self._cv:
            while not ready():
                left = end - self.clock.now()
                if left <= 0 or not self.running() or self.paused.is_set():
                    return ready()
                self.clock.wait(self._cv, min(left, poll))
        return True

    def _wait_command(self, now_ns: int, ticks0: int) -> bool:
        """Wait for the executor's command of the tick at ``now_ns``.

        The executor does not repeat an identical hold while the arm is at rest. In-process
        (its command counter and whether it holds at rest) the wait ends once it has ticked and
        holds at rest: the target is then the previous one anyway.
        """
        ex = self.executor
        if ex is not None:
            if not self.wait(lambda: ex.command_state()[0] > ticks0, poll=0.0005):
                return False
            if ex.command_state()[1]:
                return True
        return self.wait(lambda: self._cmd_ns >= now_ns)

    def _notify(self) -> None:
        with self._cv:
            self._cv.notify_all()
