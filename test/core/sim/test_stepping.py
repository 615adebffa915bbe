"""The simulation's stepping protocol on a stepped clock (ROS-free): :class:`SimStepper`.

Real-time pacing (ticks every ``tick_period`` of wall time, no catching up after a stall), the
real-time factor, state and camera rates, ``max_duration``, and the lock-step hand-off (a tick
advances only after its observation, chunk and command; a missing one times out and counts) with
an in-process executor and across processes. The DDS tests of sim_robot_node check the same end
to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.deploy import SimRobotConfig
from ate_ros.core.sim.stepping import MAX_SUBSTEP, SimStepper

PERIOD = 0.1  # sim seconds per control period (lock-step)
NS = 1_000_000_000


class SteppedClock:
    """Wall time that passes only when the stepper sleeps or waits (or a test says so)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self.on_wait = lambda: None  # what happens elsewhere while the stepper waits

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def wait(self, cv, timeout: float) -> None:
        self.t += timeout
        self.on_wait()


class StubEnv:
    """Time, targets and steps of a simulation, without physics."""

    def __init__(self, episode_steps: int = 10_000) -> None:
        self.time = 0.0
        self.target = np.zeros(2)
        self.advanced: list[tuple[float, np.ndarray]] = []  # (seconds, target) per sub-step
        self.steps: list[np.ndarray] = []  # the target of each lock-step period
        self.episode_steps = episode_steps

    def set_targets(self, q: np.ndarray) -> None:
        self.target = np.array(q, dtype=float)

    def advance(self, seconds: float) -> None:
        self.advanced.append((seconds, self.target.copy()))
        self.time += seconds

    def step(self, q: np.ndarray, render: bool = True) -> None:
        self.set_targets(q)
        self.steps.append(self.target.copy())
        self.time += PERIOD

    def done(self) -> bool:
        return len(self.steps) >= self.episode_steps


class Host:
    """The robot's outputs, recorded; stops the stepper after ``ticks`` success checks (one
    per tick) or, when given, once the clock passes ``deadline`` (wall seconds)."""

    def __init__(self, env: StubEnv, ticks: int, clock: SteppedClock) -> None:
        self.env, self.ticks, self.clock = env, ticks, clock
        self.deadline = float("inf")
        self.checks = 0
        self.clocks: list[int] = []
        self.states: list[tuple[int, bool]] = []  # (stamp ns, with images)
        self.targets_sampled = 0
        self.on_clock = lambda stamp_ns: None
        self.on_state = lambda stamp_ns, images: None

    def ok(self) -> bool:
        return self.checks < self.ticks and self.clock.t < self.deadline - 1e-9

    def now_ns(self) -> int:
        return NS + round(self.env.time * NS)  # the episode's time base: 1 s

    def target(self) -> np.ndarray:
        self.targets_sampled += 1
        return np.full(2, self.env.time)  # a ramp in time: shows when it was sampled

    def publish_clock(self, stamp_ns: int) -> None:
        self.clocks.append(stamp_ns)
        self.on_clock(stamp_ns)

    def publish_state(self, images: bool, stamp_ns: int) -> None:
        self.states.append((stamp_ns, images))
        self.on_state(stamp_ns, images)

    def check_success(self) -> None:
        self.checks += 1


def stepper(ticks: int, **cfg) -> tuple[SimStepper, StubEnv, Host, SteppedClock]:
    env, clock = StubEnv(cfg.pop("episode_steps", 10_000)), SteppedClock()
    host = Host(env, ticks, clock)
    config = SimRobotConfig(**cfg)
    s = SimStepper(env, host, lambda: config, clock=clock)
    s.start()
    return s, env, host, clock


# ----- real time ----------------------------------------------------------------------------
def test_real_time_ticks_are_paced_by_the_wall_clock_at_the_real_time_factor():
    s, env, host, clock = stepper(10, tick_period=0.05, real_time_factor=2.0,
                                  joint_state_rate_hz=50.0, camera_rate_hz=5.0)
    s.run(lockstep=False)
    assert clock.sleeps == pytest.approx([0.05] * 10)  # ticks take no wall time here
    assert env.time == pytest.approx(10 * 2.0 * 0.05)  # rtf * tick_period per tick
    assert s.measured_real_time_factor() == pytest.approx(2.0)
    # Sub-steps of MAX_SUBSTEP, each after sampling the commanded target at its time.
    assert len(env.advanced) == 100 and host.targets_sampled == 100
    assert all(step == pytest.approx(MAX_SUBSTEP) for step, _ in env.advanced)
    assert [q[0] for _, q in env.advanced[:3]] == pytest.approx([0.0, 0.01, 0.02])
    # joint_states every tick (50 Hz < 0.1 s ticks), frames at 5 Hz of sim time: every other.
    assert [images for _, images in host.states] == [True] + [False, True] * 5
    assert host.states[-1][0] == NS + round(1e9 * env.time) == host.clocks[-1]


def test_a_stalled_tick_restarts_the_pacing_instead_of_catching_up():
    s, env, host, clock = stepper(6, tick_period=0.05, real_time_factor=1.0)
    stall = {3: 2.0}  # wall seconds tick 3 takes (a loaded machine)
    host.on_clock = lambda _ns: setattr(clock, "t", clock.t + stall.get(host.checks + 1, 0.0))
    s.run(lockstep=False)
    # More than a second late: the next tick is a period after the stall, not at once.
    assert clock.sleeps == pytest.approx([0.05, 0.05, 0.0, 0.05, 0.05, 0.05])
    assert env.time == pytest.approx(6 * 0.05)  # a fixed step: sim time slowed down instead


def test_a_short_delay_is_caught_up():
    s, env, host, clock = stepper(5, tick_period=0.05, real_time_factor=1.0)
    stall = {2: 0.12}
    host.on_clock = lambda _ns: setattr(clock, "t", clock.t + stall.get(host.checks + 1, 0.0))
    s.run(lockstep=False)
    # Tick 2 ends at 0.17 (due 0.10); ticks 3 and 4 (due 0.15, 0.20) follow at once / shortly.
    assert clock.sleeps == pytest.approx([0.05, 0.0, 0.0, 0.03, 0.05])
    assert clock.t == pytest.approx(5 * 0.05)


def test_the_episode_ends_after_max_duration_and_on_pause():
    s, env, host, clock = stepper(100, tick_period=0.05, real_time_factor=2.0, max_duration=0.5)
    host.deadline = 1.0  # 20 ticks
    s.run(lockstep=False)
    assert env.time == pytest.approx(0.5) and s.episode_over.is_set()
    assert host.checks == 5 and len(clock.sleeps) == 20  # halted ticks go on, time stands
    s, env, host, clock = stepper(100, tick_period=0.05)
    host.deadline = 0.2
    s.pause()
    s.run(lockstep=False)
    assert env.time == 0.0 and s.episode_over.is_set() and host.checks == 0


def test_nothing_ticks_before_the_start_or_after_stop():
    env, clock = StubEnv(), SteppedClock()
    host = Host(env, ticks=1, clock=clock)
    s = SimStepper(env, host, lambda: SimRobotConfig(), clock=clock)
    host.ticks = 0  # the host goes away while waiting for the start
    s.run(lockstep=False, poll=0.0)
    assert host.clocks == [] and env.time == 0.0
    s, env, host, _ = stepper(5)
    s.stop()
    s.run(lockstep=True)
    assert host.clocks == [] and env.steps == []


# ----- lock-step ----------------------------------------------------------------------------
class InProcessExecutor:
    """A perfect executor beside the simulation: wants a chunk every ``every`` ticks, takes the
    chunk when it arrives, commands on its control tick (/clock at the tick's stamp)."""

    def __init__(self, s: SimStepper, host: Host, every: int = 3, answer: bool = True,
                 take_after: float = 0.0) -> None:
        self.s, self.every, self.answer, self.take_after = s, every, answer, take_after
        self.handled = self.commands = 0
        self.asked: list[float] = []
        self.handled_at_tick: list[int] = []  # chunks taken when each control tick ran
        self._arrived: list[float] = []  # wall time of chunks not taken yet
        s.clock.on_wait = self._take
        host.on_state = self._on_state
        host.on_clock = self._on_clock

    def needs_chunk(self, now: float) -> bool:
        self.asked.append(now)
        return (len(self.asked) - 1) % self.every == 0

    def chunks_handled(self) -> int:
        return self.handled

    def command_state(self) -> tuple[int, bool]:
        return self.commands, False

    def _on_state(self, stamp_ns: int, images: bool) -> None:
        if images and self.answer:  # observation -> policy -> chunk stamped like it
            self.s.chunk_arrived(stamp_ns)
            self._arrived.append(self.s.clock.now())
            self._take()

    def _take(self) -> None:
        """The executor's subscription takes a chunk ``take_after`` wall seconds after it
        arrived (another thread)."""
        while self._arrived and self.s.clock.now() >= self._arrived[0] + self.take_after - 1e-9:
            self._arrived.pop(0)
            self.handled += 1

    def _on_clock(self, stamp_ns: int) -> None:
        if stamp_ns % round(PERIOD * NS) == 0:  # the tick's own stamp (not 1 ns before)
            self.commands += 1
            self.handled_at_tick.append(self.handled)
            t = stamp_ns / NS
            self.s.command_arrived(stamp_ns, np.array([0.0, PERIOD, 2 * PERIOD]),
                                   np.array([[t, 0.0], [t + 1, 1.0], [t + 2, 2.0]]))


def test_lockstep_advances_one_period_after_each_tick_s_chunk_and_command():
    s, env, host, clock = stepper(6, lockstep_timeout=2.0)
    ex = InProcessExecutor(s, host)
    s.executor = ex
    s.run(lockstep=True)
    assert len(env.steps) == 6 and env.time == pytest.approx(6 * PERIOD)
    # Observations (frames) exactly on the ticks the executor asked for, stamped by the tick.
    ticks = [NS + round(k * PERIOD * NS) for k in range(6)]
    assert host.states == [(t, k % 3 == 0) for k, t in enumerate(ticks)]
    assert ex.asked == pytest.approx([t / NS for t in ticks])
    # /clock just before the tick (stamps are "now"), then at it (the executor's tick).
    assert host.clocks == [c for t in ticks for c in (t - 1, t)]
    # Each period holds its command's first point after the stamp.
    assert [q.tolist() for q in env.steps] == [[t / NS + 1, 1.0] for t in ticks]
    assert s.lockstep_waits == 0 and clock.t == 0.0  # nothing had to wait


def test_lockstep_waits_until_the_executor_took_the_chunk_before_its_control_tick():
    s, env, host, clock = stepper(4, lockstep_timeout=2.0)
    ex = InProcessExecutor(s, host, every=2, take_after=0.01)
    s.executor = ex
    s.run(lockstep=True)
    assert ex.handled_at_tick == [1, 1, 2, 2]  # each due tick's chunk, before that tick
    assert s.lockstep_waits == 0 and clock.t == pytest.approx(2 * 0.01, abs=1e-3)


def test_lockstep_gives_up_on_a_missing_chunk_after_lockstep_timeout():
    s, env, host, clock = stepper(4, lockstep_timeout=2.0)
    ex = InProcessExecutor(s, host, every=2, answer=False)  # the policy never answers
    s.executor = ex
    s.run(lockstep=True)
    assert len(env.steps) == 4  # it went on all the same, with the executor's commands
    assert s.lockstep_waits == 2  # the two ticks that wanted a chunk
    assert clock.t == pytest.approx(2 * 2.0, abs=0.01)


def test_lockstep_across_processes_waits_for_the_stamped_messages():
    """Out of process: frames at camera_rate_hz; the chunk and command are known by stamp."""
    s, env, host, clock = stepper(4, lockstep_timeout=2.0, camera_rate_hz=5.0)
    commands: list[int] = []

    def on_clock(stamp_ns: int) -> None:
        if stamp_ns % 1000 == 0:  # the tick's stamp (not the one 1 ns before)
            commands.append(stamp_ns)
            s.command_arrived(stamp_ns, np.array([PERIOD]), np.array([[len(commands), 0.0]]))

    host.on_state = lambda stamp_ns, images: images and s.chunk_arrived(stamp_ns)
    host.on_clock = on_clock
    s.run(lockstep=True)
    assert [images for _, images in host.states] == [True, False, True, False]
    assert [q[0] for q in env.steps] == [1.0, 2.0, 3.0, 4.0]
    assert s.lockstep_waits == 0
    assert clock.sleeps == pytest.approx([0.005, 0.005])  # the executor takes each chunk


def test_lockstep_keeps_the_target_without_a_command_and_stops_when_the_episode_is_done():
    s, env, host, clock = stepper(3, lockstep_timeout=0.5, episode_steps=2, camera_rate_hz=1.0)
    host.on_state = lambda stamp_ns, images: images and s.chunk_arrived(stamp_ns)
    env.target = np.array([0.3, -0.3])
    s.run(lockstep=True)
    assert [q.tolist() for q in env.steps] == [[0.3, -0.3]] * 2  # held: no command came
    assert s.lockstep_waits == 2 and s.episode_over.is_set()
