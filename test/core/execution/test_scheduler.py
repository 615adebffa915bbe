"""Core chunk execution (ROS-free): safety invariants under fuzzing, watchdog, latency, blends."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.trajectory_math import interp_positions

from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.execution import ChunkScheduler, ExecutionConfig, limit_step
from ate_ros.core.execution.scheduler import MAX_CATCH_UP_S

TOL = 1e-9


def _emb(dof: int = 3, rate: float = 10.0) -> Embodiment:
    return Embodiment(
        name="fuzz", control_rate_hz=rate, max_start_deviation=0.5,
        joints=[JointSpec(name=f"j{i}", slot=i, lower=-1.0 - 0.3 * i, upper=1.0 + 0.2 * i,
                          max_velocity=1.0 + 0.5 * i, max_acceleration=8.0 + 4 * i)
                for i in range(dof)])


class Checker:
    """Asserts the executor invariant on every commanded point."""

    def __init__(self, s: ChunkScheduler, q0: np.ndarray) -> None:
        self.s = s
        self.q = np.clip(q0, s.lower, s.upper)
        self.v = np.zeros(s.dof)
        self.t = None
        self.n = 0

    def check_point(self, q: np.ndarray, q_prev: np.ndarray, h: float) -> None:
        s = self.s
        assert q.shape == (s.dof,) and np.isfinite(q).all()
        assert (q >= s.lower - TOL).all() and (q <= s.upper + TOL).all(), q
        step = np.abs(q - q_prev)
        assert (step <= s.vmax * h * (1 + 1e-9) + TOL).all(), (step / h, s.vmax)

    def command(self, now: float, measured: np.ndarray, check_acc: bool) -> np.ndarray:
        target_t = now + self.s.dt
        h = self.s.dt if self.t is None else min(target_t - self.t, self.s.dt)
        if self.t is not None and target_t - self.t > 1.5 * self.s.dt:  # missed ticks replayed
            h = min(target_t - self.t, MAX_CATCH_UP_S + self.s.dt)
        q = self.s.command(now, measured)
        if self.t is not None and target_t - self.t <= 1e-9:
            np.testing.assert_array_equal(q, self.q)
            return q
        self.check_point(q, self.q, h)
        v = (q - self.q) / h
        if check_acc:
            assert (np.abs(v - self.v) <= self.s.amax * h * (1 + 1e-6) + 1e-7).all(), (
                (v - self.v) / h, self.s.amax)
        self.q, self.v, self.t = q, v, target_t
        self.n += 1
        return q

    def check_planned(self, now: float) -> None:
        times, pos = self.s.planned(now)
        assert times.size >= 1 and (times > now).all() and np.all(np.diff(times) > 0)
        prev = self.q
        for q in pos:
            self.check_point(q, prev, self.s.dt)
            prev = q


def _random_chunk(rng: np.random.Generator, s: ChunkScheduler, q: np.ndarray) -> np.ndarray:
    kind = rng.integers(0, 10)
    h = int(rng.integers(1, 25))
    d = s.dof
    if kind == 0:  # wrong width (wrong joints / lengths)
        return rng.normal(size=(h, d + int(rng.choice([-1, 1, 2]))))
    if kind == 1:  # wrong rank / empty
        return [rng.normal(size=(d,)), np.zeros((0, d)), rng.normal(size=(2, h, d))][
            int(rng.integers(0, 3))]
    base = q + np.cumsum(rng.normal(0, rng.choice([0.02, 0.2, 2.0]), (h, d)), axis=0)
    if kind == 2:  # huge values
        base = base + rng.choice([-1, 1], size=base.shape) * 10.0 ** rng.uniform(0, 9,
                                                                                  base.shape)
    if kind == 3:  # NaN / inf sprinkled in
        idx = rng.integers(0, h), rng.integers(0, d)
        base[idx] = rng.choice([np.nan, np.inf, -np.inf])
    if kind >= 5:  # plausible chunk starting near the current state
        base[0] = q + rng.normal(0, 0.1, d)
    return base


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), blend=st.sampled_from(["replace", "crossfade",
                                                              "ensemble"]),
       crossfade=st.integers(0, 6), dof=st.integers(1, 7),
       latency=st.floats(-0.05, 0.6), jitter=st.booleans(),
       vscale=st.floats(0.1, 1.0), watchdog=st.floats(0.05, 3.0))
def test_fuzz_never_violates_limits(seed, blend, crossfade, dof, latency, jitter, vscale,
                                    watchdog):
    """>= 10k fuzzed chunks (300 examples x 40): outputs stay in position/velocity limits."""
    rng = np.random.default_rng(seed)
    emb = _emb(dof)
    s = ChunkScheduler(emb, ExecutionConfig(blend=blend, crossfade_steps=crossfade,
                                            velocity_scale=vscale, watchdog_timeout=watchdog))
    q0 = rng.uniform(emb.lower - 0.2, emb.upper + 0.2)  # measured may even be out of range
    chk = Checker(s, q0)
    measured = q0
    now = 0.0
    for i in range(40):
        chunk = _random_chunk(rng, s, chk.q)
        obs = now - latency * rng.uniform(0.5, 1.5)
        r = s.submit(chunk, obs, now, measured)
        assert r.accepted or r.reason
        for _ in range(int(rng.integers(0, 4))):
            now += s.dt * (rng.uniform(0.6, 1.4) if jitter else 1.0)
            if jitter and rng.uniform() < 0.1:  # a stalled executor: ticks missed
                now += s.dt * float(rng.choice([1.0, 3.0, 40.0]))
            q = chk.command(now, measured, check_acc=not jitter)
            measured = q + rng.normal(0, 0.01, dof)  # a robot tracking with noise
        if i % 8 == 0 and chk.t is not None:
            chk.check_planned(now)
    assert s.stats.accepted + s.stats.rejected_total == 40


def test_fuzz_bad_inputs_all_rejected_for_the_right_reason():
    s = ChunkScheduler(_emb(3))
    q = np.zeros(3)
    assert s.submit(np.zeros((4, 2)), 0, 0, q).code == "shape"
    assert s.submit(np.zeros((0, 3)), 0, 0, q).code == "shape"
    assert s.submit("not a chunk", 0, 0, q).code == "shape"
    bad = np.zeros((4, 3))
    bad[2, 1] = np.nan
    assert s.submit(bad, 0, 0, q).code == "non_finite"
    assert s.submit(np.full((4, 3), np.inf), 0, 0, q).code == "non_finite"
    assert s.submit(np.zeros((4, 3)), np.nan, 0, q).code == "bad_stamp"
    assert s.submit(np.zeros((4, 3)), 0, 0, np.array([0, np.nan, 0])).code == "bad_state"
    far = np.zeros((4, 3))
    far[0, 2] = 0.9
    r = s.submit(far, 0, 0, q)
    assert r.code == "start_deviation" and "j2" in r.reason
    assert s.submit(np.zeros((4, 3)), 0.0, 1.0, q).code == "stale"
    assert s.stats.rejected_total == 9 and s.stats.accepted == 0
    # Nothing accepted: the executor holds the measured position.
    np.testing.assert_array_equal(s.command(0.0, q), q)


def test_clamps_positions_and_counts():
    emb = _emb(2)
    s = ChunkScheduler(emb, ExecutionConfig(max_start_deviation=10.0))
    chunk = np.array([[0.0, 0.0], [5.0, 0.0], [0.1, 0.0]])
    r = s.submit(chunk, 0.0, 0.0, np.zeros(2))
    assert r.accepted and r.clipped == 2  # point 1 clamped (and too fast), point 2 too fast
    q = np.zeros(2)
    for k in range(40):
        q = s.command(k * s.dt, q)
        assert emb.within_limits(q)


def test_watchdog_holds_within_one_period():
    emb = _emb(1)
    s = ChunkScheduler(emb, ExecutionConfig(watchdog_timeout=0.5))
    dt = s.dt
    chunk = (0.05 * np.arange(1, 31))[:, None]  # 3 s of steady motion at 0.5 rad/s
    assert s.submit(chunk, 0.0, 0.0, np.zeros(1)).accepted
    q = np.zeros(1)
    outs = []
    for k in range(20):
        q = s.command(k * dt, q)
        outs.append((k * dt, q[0], s.holding, s.watchdog_expired))
    # The first tick with now - last_accept > timeout holds (no tick later than that).
    first_hold = next(t for t, _, _, w in outs if w)
    assert 0.5 < first_hold <= 0.5 + dt + 1e-9
    assert s.stats.watchdog_holds == 1
    # Then decelerates (acceleration-limited) and stays put.
    tail = np.array([x for t, x, _, _ in outs if t >= first_hold])
    steps = np.diff(tail)
    assert (steps >= -1e-12).all() and (np.diff(steps) <= 1e-12).all()
    assert steps[-1] == 0.0
    # A new chunk after the watchdog is accepted and followed again.
    now = 19 * dt
    assert s.submit(tail[-1] + 0.05 * np.arange(1, 11)[:, None], now, now, q).accepted
    assert not s.watchdog_expired


def test_plan_exhausted_holds_last_point():
    s = ChunkScheduler(_emb(2))
    chunk = np.linspace([0.0, 0.0], [0.2, -0.2], 5)
    assert s.submit(chunk, 0.0, 0.0, np.zeros(2)).accepted
    q = np.zeros(2)
    for k in range(15):
        q = s.command(k * s.dt, q)
    np.testing.assert_allclose(q, [0.2, -0.2], atol=1e-9)
    assert s.holding and s.needs_chunk(1.5)


def test_past_points_dropped_given_stamps():
    s = ChunkScheduler(_emb(1))
    dt = s.dt
    chunk = (0.01 * np.arange(1, 11))[:, None]  # point i at obs + (i+1) dt
    now = 0.35
    r = s.submit(chunk, 0.0, now, np.array([0.0]))
    assert r.accepted and r.dropped == 3  # 0.1, 0.2, 0.3 are past
    times, _ = s.planned(now) if s.last_command is not None else (None, None)
    assert s.stats.dropped_points == 3
    # Follow long enough to catch up, then the command for now+dt matches the chunk point
    # planned for that time (interpolated): latency is compensated, not replayed.
    q = np.zeros(1)
    for k in range(4):
        q = s.command(now + k * dt, q)
    t_target = now + 3 * dt + dt
    expect = np.interp(t_target, dt * np.arange(1, 11), chunk[:, 0])
    assert q[0] == pytest.approx(expect, abs=1e-9)
    # With compensation off nothing is dropped.
    s2 = ChunkScheduler(_emb(1), ExecutionConfig(latency_compensation=False))
    assert s2.submit(chunk, 0.0, now, np.array([0.0])).dropped == 0


def _boundary_run(blend: str, offset: float) -> tuple[int, float]:
    """Two chunks of a smooth motion, the second offset by ``offset``; returns
    (commands changed by the limiter after the boundary, largest step / (vmax dt))."""
    emb = _emb(1)
    s = ChunkScheduler(emb, ExecutionConfig(blend=blend, crossfade_steps=3))
    dt = s.dt
    traj = lambda t: 0.3 * np.sin(t)  # noqa: E731 - 0.3 rad/s peak, well inside limits
    ticks = np.arange(1, 21) * dt
    q = np.array([0.0])
    s.submit(traj(ticks)[:, None], 0.0, 0.0, q)
    prev = q
    worst = 0.0
    limited_before = None
    for k in range(12):
        now = k * dt
        if k == 6:
            limited_before = s.stats.limited_commands
            r = s.submit(traj(now + ticks)[:, None] + offset, now, now, q)
            assert r.accepted
        q = s.command(now, q)
        worst = max(worst, float(abs(q - prev)[0] / (s.vmax[0] * dt)))
        prev = q
    return s.stats.limited_commands - limited_before, worst


def test_crossfade_and_ensemble_are_continuous_replace_is_limited():
    limited_replace, worst_replace = _boundary_run("replace", 0.1)
    assert limited_replace > 0 and worst_replace == pytest.approx(1.0, abs=1e-6)
    for blend in ("crossfade", "ensemble"):
        limited, worst = _boundary_run(blend, 0.1)
        assert limited == 0, blend  # the blended plan itself respects the limits
        assert worst < 0.95, (blend, worst)


def test_ensemble_is_act_weighted_average():
    s = ChunkScheduler(_emb(1), ExecutionConfig(blend="ensemble", ensemble_decay=0.0))
    a = np.full((5, 1), 0.1)
    b = np.full((5, 1), 0.3)
    s.submit(a, 0.0, 0.0, np.zeros(1))
    s.submit(b, 0.0, 0.0, np.zeros(1))  # same observation time: same point times
    c = np.full((5, 1), 0.5)
    s.submit(c, 0.0, 0.0, np.zeros(1))
    np.testing.assert_allclose(s._pos[:, 0], 0.3)  # uniform mean of 0.1, 0.3, 0.5
    s2 = ChunkScheduler(_emb(1), ExecutionConfig(blend="ensemble", ensemble_decay=1.0))
    s2.submit(a, 0.0, 0.0, np.zeros(1))
    s2.submit(b, 0.0, 0.0, np.zeros(1))
    w = np.exp(-1.0)
    np.testing.assert_allclose(s2._pos[:, 0], (0.1 + 0.3 * w) / (1 + w))


def test_follows_feasible_plan_exactly_and_needs_chunk():
    s = ChunkScheduler(_emb(2), ExecutionConfig(replan_steps=3))
    dt = s.dt
    chunk = np.stack([0.02 * np.arange(1, 9), -0.01 * np.arange(1, 9)], axis=1)
    s.submit(chunk, 0.0, 0.0, np.zeros(2))
    q = np.zeros(2)
    for k in range(5):
        q = s.command(k * dt, q)
        np.testing.assert_allclose(q, chunk[k], atol=1e-12)
        assert not s.needs_chunk(k * dt + 1e-6)
    assert not s.needs_chunk(5.5 * dt) and s.needs_chunk(6.5 * dt)


def test_missed_ticks_continue_the_trajectory_already_sent():
    """After a stall the command is where the streamed trajectory (planned()) put the arm by
    then, not one tick further along from where the executor stopped (which would pull the arm
    back); after a stall beyond MAX_CATCH_UP_S it moves on one limited step."""
    emb = _emb(2, rate=20.0)
    s = ChunkScheduler(emb)
    dt = s.dt
    ramp = np.linspace(0.05, 0.9, 40)[:, None] * np.array([1.0, -1.0])  # 0.44 rad/s
    assert s.submit(ramp, 0.0, 0.0, np.zeros(2)).accepted
    q = np.zeros(2)
    for k in range(3):
        q = s.command(k * dt, q)
    times, pos = s.planned(2 * dt)
    q_late = s.command(7 * dt, q)  # ticks 3..6 never ran
    np.testing.assert_allclose(q_late, pos[np.isclose(times, 8 * dt)][0], atol=1e-12)
    assert s.stats.missed_ticks == 4
    assert np.abs(q_late - q).max() > s.vmax.max() * dt  # further than one step could go
    q = q_late
    q_very_late = s.command(7 * dt + 2 * MAX_CATCH_UP_S, q)
    assert s.stats.missed_ticks == 4 + int(MAX_CATCH_UP_S / dt)
    assert (np.abs(q_very_late - q) <= s.vmax * (MAX_CATCH_UP_S + dt) + 1e-9).all()


def test_a_late_tick_after_a_new_chunk_does_not_replay_what_was_never_sent():
    """At rest, a chunk arrives, then the next tick is late: the controller still held the
    rest position (the new plan was not sent yet), so the command moves one limited step from
    it, not several ticks along the new plan."""
    emb = _emb(2, rate=20.0)
    s = ChunkScheduler(emb)
    dt = s.dt
    q = np.zeros(2)
    for k in range(3):
        q = s.command(k * dt, q)
    ramp = np.linspace(0.05, 0.9, 20)[:, None] * np.array([1.0, -1.0])
    assert s.submit(ramp, 2 * dt, 2 * dt, q).accepted
    q_late = s.command(6 * dt, q)  # three ticks late
    assert (np.abs(q_late - q) <= s.vmax * dt + 1e-9).all(), q_late


@pytest.mark.parametrize("chunks_during_stall", ["handled_on_wake", "handled_on_arrival"])
def test_after_a_stall_the_command_continues_the_trajectory_last_sent(chunks_during_stall):
    """Chunks every 0.15 s, alternating direction (as fjt_probe sends them); the control tick
    stalls for 4-12 ticks at every point of the stream. Chunks arriving meanwhile are handled
    when it wakes (a stalled process), or on arrival (on a multi-threaded executor only the
    tick's callback group was held up). The first command after the stall must continue the
    trajectory the controller was following (the last one sent), not restart from where the
    executor stopped. Without the replay, or with a chunk merged before it, it was about
    0.3 rad off here; replaying the merged plan instead of the sent one, 0.2 rad when chunks
    were handled on arrival."""
    emb = _emb(3, rate=20.0)
    worst = 0.0
    for stall_at in range(3, 20):
        for stall_len in (4, 8, 12):
            s = ChunkScheduler(emb, ExecutionConfig(watchdog_timeout=5.0))
            dt, robot, sent, pending = s.dt, np.zeros(3), None, []
            for tick in range(40):
                t = tick * dt
                if tick % 3 == 0:  # a chunk from the robot's position every 0.15 s
                    d = np.linspace(0.03, 0.3, 10)[:, None] * np.array([1.0, -1.0, 0.5])
                    pending.append((robot + d * (-1) ** (tick // 3), t - 0.02))
                if stall_at <= tick < stall_at + stall_len:  # the controller goes on alone
                    if sent is not None:
                        robot = interp_positions(*sent, t)
                    if chunks_during_stall == "handled_on_arrival":
                        for chunk, obs in pending:
                            s.submit(chunk, obs, t, robot)
                        pending = []
                    continue
                for chunk, obs in pending:
                    s.submit(chunk, obs, t, robot)
                pending = []
                q = s.command(t, robot)
                if tick == stall_at + stall_len:
                    worst = max(worst, float(np.abs(q - interp_positions(*sent, t + dt)).max()))
                times, pos = s.planned(t, max_points=20)
                later = times > t + dt + 1e-9
                sent = (np.concatenate([[t + dt], times[later]]),
                        np.concatenate([q[None], pos[later]]))
                robot = q
    assert worst <= s.vmax.min() * dt, worst


def test_time_going_backwards_resets():
    s = ChunkScheduler(_emb(1))
    s.submit(np.full((5, 1), 0.1), 10.0, 10.0, np.zeros(1))
    s.command(10.0, np.zeros(1))
    q = s.command(1.0, np.array([0.3]))  # sim reset: restart from the measured state
    assert abs(q[0] - 0.3) <= s.vmax[0] * s.dt + 1e-12
    assert s.stats.clock_resets == 1 and s.stats.as_dict()["clock_resets"] == 1


def test_limit_step_brakes_before_the_position_limit():
    lo, hi = np.array([-1.0]), np.array([1.0])
    vmax, amax = np.array([2.0]), np.array([5.0])
    p, v = np.array([0.0]), np.array([0.0])
    h = 0.05
    for _ in range(200):  # target far beyond the limit
        p2, v2 = limit_step(p, v, np.array([10.0]), 0.0, h, lo, hi, vmax, amax)
        assert abs(v2[0] - v[0]) <= amax[0] * h + 1e-9 and p2[0] <= 1.0
        p, v = p2, v2
    assert p[0] == pytest.approx(1.0) and v[0] == pytest.approx(0.0)


def test_submit_and_command_are_cheap(capsys):
    emb = _emb(7)
    s = ChunkScheduler(emb)
    rng = np.random.default_rng(0)
    q = np.zeros(7)
    n = 300
    chunks = [q + np.cumsum(rng.normal(0, 0.02, (16, 7)), axis=0) for _ in range(n)]
    t0 = time.perf_counter()
    for k, c in enumerate(chunks):
        s.submit(c, k * s.dt - 0.05, k * s.dt, q)
    t_submit = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for k in range(n):
        q = s.command((n + k) * s.dt, q)
    t_cmd = (time.perf_counter() - t0) / n
    with capsys.disabled():
        print(f"\nsubmit {t_submit * 1e6:.0f} us, command {t_cmd * 1e6:.0f} us (7 joints)")
    assert t_submit < 2e-3 and t_cmd < 2e-3
