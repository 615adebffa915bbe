"""executor_node's decisions on a stepped clock (ROS-free): :class:`ChunkExecutor`.

Time is advanced by the test, tick by tick, as ros2_controllers tests its trajectory code: every
assertion names the tick at which something is sent, held or ended. The cases are those the DDS
tests of executor_node and its FollowJointTrajectory output check end to end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.executor_clock import DT, T0, Clock, embodiment, make, ramp
from support.trajectory_math import interp_positions

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.execution import (
    ChunkExecutor,
    ExecutorNodeConfig,
    GoalOutcome,
    Output,
)


def _check_limits(emb: Embodiment, decisions) -> None:
    """Every point sent is finite, inside the limits and velocity-limited, within and across
    trajectories (their committed points form one sequence)."""
    vmax = emb.max_velocity
    firsts = []
    for d in decisions:
        if d.output is Output.NONE:
            continue
        assert np.isfinite(d.positions).all() and emb.within_limits(d.positions).all()
        assert d.times[0] == pytest.approx(d.now + DT) and (np.diff(d.times) > 0).all()
        assert (np.abs(np.diff(d.positions, axis=0)) <= vmax * DT + 1e-9).all()
        firsts.append((d.times[0], d.positions[0]))
    for (t0, q0), (t1, q1) in zip(firsts, firsts[1:]):
        assert (np.abs(q1 - q0) <= vmax * (t1 - t0) + 1e-9).all()


# ----- streaming (controller topic) -----------------------------------------------------------
def test_nothing_is_sent_before_the_first_joint_states():
    ex = ChunkExecutor(embodiment(), ExecutorNodeConfig(embodiment="toy3"))
    d = ex.step(T0)
    assert d.output is Output.NONE and d.command is None
    r = ex.submit(ramp(np.zeros(3), 0.2, 8), T0, T0)
    assert not r.accepted and r.code == "bad_state" and ex.stats.rejected["bad_state"] == 1


def test_fuzzed_chunks_stream_within_limits_every_tick():
    ex = make()
    clock = Clock(ex)
    rng = np.random.default_rng(0)
    nan_chunks = huge = 0
    for i in range(120):
        q = clock.robot()
        chunk = q + np.cumsum(rng.normal(0, 0.15, (8, 3)), axis=0)
        chunk[0] = q + rng.normal(0, 0.05, 3)
        if i % 4 == 1:
            chunk[3, 1] = np.nan
            nan_chunks += 1
        elif i % 4 == 2:
            chunk[1:] *= 1e6  # clamped to the limits, not refused
            huge += 1
        ex.submit(chunk, clock.now - 0.03, clock.now)
        clock.step()
    assert ex.stats.rejected["non_finite"] == nan_chunks
    assert ex.stats.accepted + ex.stats.rejected_total == 120
    assert ex.stats.accepted >= 120 - nan_chunks - huge
    # Moving: a trajectory every tick, streamed to the controller.
    assert all(d.output is Output.STREAM for d in clock.decisions)
    _check_limits(ex.embodiment, clock.decisions)
    assert ex.counts["trajectories_sent"] == 120


def test_the_hold_at_rest_is_sent_once():
    ex = make()
    clock = Clock(ex)
    ex.submit(ramp(np.zeros(3), 0.2, 10), T0, T0)
    out = [d.output for d in clock.run(30)]
    first_rest = next(i for i, d in enumerate(clock.decisions) if d.holding and d.motion is False)
    # Streamed until the tick the arm comes to rest, that hold once, then nothing.
    assert out[:first_rest + 1] == [Output.STREAM] * (first_rest + 1)
    assert out[first_rest + 1:] == [Output.NONE] * (30 - first_rest - 1)
    assert 10 <= first_rest < 20
    # A new chunk streams again at once.
    ex.submit(ramp(clock.robot(), 0.1, 10), clock.now, clock.now)
    assert clock.step().output is Output.STREAM


def test_no_motion_after_joint_states_go_stale():
    ex = make(state_timeout=0.2)
    clock = Clock(ex)
    ex.submit(ramp(np.zeros(3), 0.8, 40), T0, T0)
    clock.run(10)
    stopped_at = clock.now  # joint_states stop arriving here (tick 10)
    ds = clock.run(20, observe=False)
    stale_tick = next(i for i, d in enumerate(ds) if d.went_stale)
    # Stale at the first tick more than state_timeout after the last joint_states (0.25 s).
    assert stale_tick == 5 and ds[stale_tick].now - stopped_at > 0.2
    assert all(not d.went_stale for d in ds[stale_tick + 1:])
    assert all(d.holding for d in ds[stale_tick:])
    speeds = [np.abs(b.command - a.command).max()
              for a, b in zip(ds[stale_tick - 1:], ds[stale_tick:])]
    assert all(s2 <= s1 + 1e-12 for s1, s2 in zip(speeds, speeds[1:]))  # braking
    assert ds[-1].output is Output.NONE and not ds[-1].motion  # at rest, hold already sent
    assert math.isinf(ex.scheduler.plan_end)
    r = ex.submit(ramp(ex.measured, 0.1, 10), clock.now, clock.now)
    assert not r.accepted and r.code == "bad_state"


def test_dry_run_only_publishes_dry_run_trajectories():
    for goals in (False, True):
        ex = make(goals=goals, dry_run=True)
        clock = Clock(ex)
        ex.submit(ramp(np.zeros(3), 0.2, 8), T0, T0)
        ds = clock.run(20)
        sent = {d.output for d in ds}
        assert sent == {Output.DRY_RUN, Output.NONE} and ds[0].output is Output.DRY_RUN
        assert not clock.goals  # no FollowJointTrajectory goal either
        _check_limits(ex.embodiment, ds)


def test_brake_sends_the_trajectory_to_rest():
    """Deactivation: the controller gets every command until rest, then nothing more."""
    ex = make(amax=2.0)
    clock = Clock(ex)
    ex.submit(ramp(np.zeros(3), 0.8, 40), T0, T0)
    clock.run(10)
    d = ex.brake(clock.now)
    assert d.output is Output.STREAM and d.holding
    assert np.abs(d.positions[-1] - d.positions[-2]).max() < 1e-12  # ends at rest
    steps = np.abs(np.diff(d.positions, axis=0)).max(axis=1)
    assert (np.diff(steps) <= 1e-12).all()
    assert np.abs(d.positions[-1] - ramp(np.zeros(3), 0.8, 40)[-1]).max() > 0.3  # stopped early


# ----- ExecuteChunk goals ---------------------------------------------------------------------
def test_goal_feedback_every_tick_and_success_at_its_last_point():
    ex = make()
    clock = Clock(ex)
    chunk = ramp(np.zeros(3), 0.2, 20)
    r, goal = ex.start_goal(chunk, T0, T0)
    assert r.accepted and goal is ex.goal and goal.end_time == pytest.approx(T0 + 20 * DT)
    ds = clock.run(25)
    ends = [(i, e) for i, d in enumerate(ds) for e in d.ended]
    assert len(ends) == 1
    tick, end = ends[0]
    # Tick k commands the point for now + dt: index k; the last one (19) ends the goal.
    assert tick == 19 and end.goal is goal
    assert (end.outcome, end.message) == (GoalOutcome.SUCCEEDED, "executed")
    assert [d.feedback[0] for d in ds[:20]] == list(range(20))
    assert all(d.feedback is None for d in ds[20:])
    assert goal.executed == 20 and goal.max_error < 0.1
    assert np.abs(ds[-1].command - chunk[-1]).max() < 1e-6


def test_goal_cancel_holds_and_stays_held():
    ex = make()
    clock = Clock(ex)
    start = np.zeros(3)
    _, goal = ex.start_goal(ramp(start, 0.6, 80), T0, T0)
    clock.run(5)
    ex.cancel_goal(goal)
    [end] = ex.take_ended()
    assert (end.outcome, end.message) == (GoalOutcome.CANCELED, "canceled: holding")
    assert ex.goal is None and math.isinf(ex.scheduler.plan_end)
    ds = clock.run(10)
    assert all(d.feedback is None and d.holding for d in ds)
    held = ds[-1].command
    assert all(np.array_equal(d.command, held) for d in clock.run(10))
    assert held[0] < 0.6 / 2  # stopped well before the chunk's end
    ex.cancel_goal(goal)  # a second cancel changes nothing
    assert ex.take_ended() == []


def test_cancel_before_any_tick_executes_nothing():
    """Sim time paused: no control tick ran between the goal and its cancel."""
    ex = make()
    _, goal = ex.start_goal(ramp(np.zeros(3), 0.6, 80), T0, T0)
    assert math.isfinite(ex.scheduler.plan_end)
    ex.cancel_goal(goal)
    [end] = ex.take_ended()
    assert end.outcome is GoalOutcome.CANCELED and goal.executed == 0
    assert ex.scheduler.plan_end == -math.inf


def test_goal_preempted_by_a_new_goal_by_a_topic_chunk_and_by_a_stop_request():
    ex = make()
    clock = Clock(ex)
    _, a = ex.start_goal(ramp(np.zeros(3), 0.6, 80), T0, T0)
    clock.run(3)
    _, b = ex.start_goal(ramp(clock.robot(), -0.6, 80), clock.now, clock.now)
    [end_a] = ex.take_ended()
    assert end_a.goal is a and end_a.outcome is GoalOutcome.PREEMPTED
    assert end_a.message == "preempted by a new goal" and a.executed == 3
    clock.run(3)
    assert ex.submit(ramp(clock.robot(), 0.1, 10), clock.now, clock.now).accepted
    [end_b] = ex.take_ended()
    assert (end_b.goal, end_b.outcome) == (b, GoalOutcome.PREEMPTED)
    assert "action_chunk" in end_b.message and ex.goal is None
    _, c = ex.start_goal(ramp(clock.robot(), 0.6, 80), clock.now, clock.now)
    clock.run(2)
    ex.stop_request()
    [end_c] = ex.take_ended()
    assert (end_c.goal, end_c.outcome, end_c.message) == (
        c, GoalOutcome.PREEMPTED, "stopped by action_chunk")
    # A refused chunk does not preempt: the goal keeps running.
    _, d = ex.start_goal(ramp(clock.robot(), 0.6, 80), clock.now, clock.now)
    bad = ramp(clock.robot(), 0.6, 80)
    bad[2, 0] = np.nan
    assert not ex.submit(bad, clock.now, clock.now).accepted
    assert ex.goal is d and ex.take_ended() == []


def test_stop_request_holds_where_the_robot_is():
    ex = make()
    clock = Clock(ex)
    start = np.zeros(3)
    _, goal = ex.start_goal(ramp(start, 0.8, 80, (1.0, 1.0, 1.0)), T0, T0)
    clock.run(20)
    moved = clock.robot().copy()
    ex.stop_request()
    ds = clock.run(15)
    stopped = ds[-1].command
    assert all(np.array_equal(d.command, stopped) for d in clock.run(5))
    # Braked from where it was (within the braking distance), not back to the start.
    assert np.abs(stopped - moved).max() < 0.1 and np.abs(stopped - start).min() > 0.15
    assert ex.stats.stop_requests == 1 and ex.stats.rejected_total == 0


def test_a_goal_refused_for_a_stale_state_or_deviation():
    ex = make()
    r, goal = ex.start_goal(ramp(np.full(3, 0.9), 0.1, 10), T0, T0)  # 0.9 from the robot
    assert not r.accepted and goal is None and r.code == "start_deviation"
    ex.observe(T0 - 10.0, np.zeros(3))
    r, goal = ex.start_goal(ramp(np.zeros(3), 0.1, 10), T0, T0)
    assert not r.accepted and r.code == "bad_state" and ex.goal is None


def test_a_garbage_chunk_is_refused_as_garbage_even_when_joint_states_are_stale():
    """Content is checked before the robot's state: NaN/inf and wrong shapes are counted as
    what they are (seen in CI: under load a NaN chunk was counted as bad_state)."""
    ex = make()
    ex.observe(T0 - 10.0, np.zeros(3))  # stale
    nan = np.full((10, 3), np.nan)
    assert ex.submit(nan, T0, T0).code == "non_finite"
    assert ex.start_goal(np.zeros((4, 2)), T0, T0)[0].code == "shape"
    assert ex.submit(ramp(np.zeros(3), 0.1, 10), T0, T0).code == "bad_state"
    assert (ex.stats.rejected["non_finite"], ex.stats.rejected["shape"],
            ex.stats.rejected["bad_state"]) == (1, 1, 1)


def test_stop_aborts_the_goal_and_refuses_chunks():
    ex = make()
    _, goal = ex.start_goal(ramp(np.zeros(3), 0.6, 80), T0, T0)
    ex.stop()
    [end] = ex.take_ended()
    assert (end.outcome, end.message) == (GoalOutcome.ABORTED, "executor shutting down")
    assert not ex.submit(ramp(np.zeros(3), 0.1, 10), T0, T0).accepted


# ----- FollowJointTrajectory goals ------------------------------------------------------------
def nominal_chunk(q, k):
    return np.asarray(q) + np.linspace(0.03, 0.3, 10)[:, None] * np.array(
        [1.0, -1.0, 0.5]) * (-1) ** k


def test_goal_k_plus_1_is_sent_at_the_next_tick_while_goal_k_is_active():
    """A chunk every 3 ticks, each 0.5 s long: each goes out as a goal at the tick after it
    arrived, while the previous goal is still running; the ticks in between send nothing (the
    running goal holds them); the controller's ends of superseded goals count as preempted."""
    ex = make(goals=True, amax=2.0)
    clock = Clock(ex)
    for k in range(6):
        ex.submit(nominal_chunk(clock.robot(), k), clock.now - 0.02, clock.now)
        clock.run(3)
    clock.run(40)
    sent_at = [tick for tick, _, _ in clock.goals]
    assert sent_at[:6] == [0, 3, 6, 9, 12, 15]
    for (_, t_prev, _), (tick, _, _) in zip(clock.goals[:5], clock.goals[1:6]):
        assert T0 + tick * DT < t_prev[-1]  # sent while the previous goal was still running
    assert all(d.output is Output.NONE for i, d in enumerate(clock.decisions)
               if i not in sent_at)
    # The last goal ends at rest; at that tick one hold goal (its last point), then nothing.
    assert len(sent_at) == 7
    _, t, p = clock.goals[5]
    assert np.abs(p[-1] - p[-2]).max() < 1e-9 and not ex.scheduler.moving
    rest_tick, t_rest, p_rest = clock.goals[6]
    assert T0 + rest_tick * DT >= t[-2] - 1e-9 and p_rest.shape == (1, 3)
    np.testing.assert_allclose(p_rest[0], p[-1], atol=1e-9)
    # The controller supersedes goals 1-5 and completes goal 6.
    for seq in range(1, 7):
        assert ex.goal_result(seq, motion=True, succeeded=False) == ""
    assert ex.goal_result(7, motion=False, succeeded=True) == ""
    assert ex.counts["fjt_goals_preempted"] == 6 and ex.counts["fjt_goals_succeeded"] == 1
    assert ex.counts["fjt_goals_sent"] == ex.counts["trajectories_sent"] == 7
    assert not any(ex.counts[f"fjt_goals_{k}"] for k in ("rejected", "aborted", "canceled"))


def test_a_goal_holds_every_command_until_rest():
    """Each goal is what the executor would stream tick by tick from then on, to rest."""
    ex = make(goals=True, amax=2.0)
    clock = Clock(ex)
    ex.submit(nominal_chunk(np.zeros(3), 0), T0 - 0.02, T0)
    clock.run(30)
    (_, times, pos), (rest_tick, _, _) = clock.goals
    assert T0 + rest_tick * DT >= times[-2] - 1e-9  # the hold goal: once at rest
    commands = np.array([d.command for d in clock.decisions])
    n = min(len(pos), len(commands))
    np.testing.assert_allclose(pos[:n], commands[:n], atol=1e-12)
    np.testing.assert_allclose(times[:n], T0 + DT * np.arange(1, n + 1))


def test_a_long_chunk_goal_covers_the_whole_chunk():
    ex = make(goals=True, amax=2.0)
    chunk = np.zeros((40, 3))
    chunk[:, 0] = np.linspace(0.02, 0.8, 40)
    ex.submit(chunk, T0 - 0.02, T0)
    d = ex.step(T0)
    assert d.output is Output.GOAL and len(d.times) > ex.config.stream_horizon
    assert d.times[-1] >= T0 - 0.02 + 40 * DT - 1e-9
    np.testing.assert_allclose(d.positions[-1], chunk[-1], atol=1e-3)


@pytest.mark.parametrize("kind", ["rejected", "aborted"])
def test_failed_goal_restarts_from_the_robot(kind):
    """The controller rejects (or aborts) the goal and the robot stays where it was: the failure
    is counted and reported, a running ExecuteChunk goal aborts, and the next goal starts where
    the robot really is, not where the failed plan went."""
    ex = make(goals=True, amax=2.0)
    clock = Clock(ex)
    _, goal = ex.start_goal(np.linspace(0.05, 0.48, 10)[:, None] * np.ones(3), T0, T0)
    clock.step(observe=False)
    seq = ex.latest_goal
    for _ in range(5):  # the executor's own commands move on; the robot never does
        ex.observe(clock.now, np.zeros(3))
        clock.step(observe=False)
    robot = ex.measured.copy()
    assert np.abs(ex.scheduler.last_command - robot).max() > 0.1
    warning = ex.goal_failed(seq, motion=True, kind=kind, detail="fake failure")
    assert warning == f"FollowJointTrajectory goal {seq} fake failure"
    assert ex.counts[f"fjt_goals_{kind}"] == 1 and ex.last_error == f"goal {seq}: fake failure"
    [end] = ex.take_ended()
    assert (end.goal, end.outcome) == (goal, GoalOutcome.ABORTED)
    assert "FollowJointTrajectory goal fake failure" == end.message
    ex.submit(np.linspace(0.01, 0.1, 10)[:, None] * np.ones(3) + robot, clock.now, clock.now)
    d = ex.step(clock.now)
    assert d.output is Output.GOAL
    assert np.abs(d.positions[0] - robot).max() <= 1.0 * DT + 1e-9


def test_a_motion_goal_that_could_not_be_sent_restarts_from_the_robot():
    """The action server was not available when the chunk's goal went out: the controller never
    got it, and the ticks after it send nothing (a goal would be running). The next goal must
    start where the robot is, not where the unsent plan's commands went; a running ExecuteChunk
    goal aborts. An unsent hold changes nothing."""
    ex = make(goals=True, amax=2.0)
    _, goal = ex.start_goal(np.linspace(0.05, 0.48, 10)[:, None] * np.ones(3), T0, T0)
    d = ex.step(T0)
    assert d.output is Output.GOAL and d.motion
    warning = ex.goal_unsent(d.motion, "server not available")
    assert warning == "FollowJointTrajectory goal not sent: server not available"
    assert ex.counts["fjt_goals_unsent"] == 1 and ex.counts["fjt_goals_sent"] == 0
    [end] = ex.take_ended()
    assert (end.goal, end.outcome) == (goal, GoalOutcome.ABORTED)
    robot = np.zeros(3)
    now = T0
    for _ in range(6):  # the robot stays put; without the drop the plan would run on
        now += DT
        ex.observe(now, robot)
        d = ex.step(now)
    assert np.abs(ex.scheduler.last_command - robot).max() <= 1e-9
    assert ex.counts["fjt_goals_unsent"] == 1
    now += DT
    ex.observe(now, robot)
    ex.submit(np.linspace(0.01, 0.1, 10)[:, None] * np.ones(3), now, now)
    d = ex.step(now)
    assert d.output is Output.GOAL
    assert np.abs(d.positions[0] - robot).max() <= 1.0 * DT + 1e-9
    # A hold that could not be sent: the plan stays.
    ex.goal_sent()
    before = ex.scheduler.plan_end
    ex.goal_unsent(False, "server not available")
    assert ex.scheduler.plan_end == before and ex.take_ended() == []


def test_preemption_of_an_older_goal_or_failure_of_a_hold_goal_changes_nothing():
    ex = make(goals=True)
    clock = Clock(ex)
    ex.submit(nominal_chunk(np.zeros(3), 0), T0 - 0.02, T0)
    clock.step()
    ex.submit(nominal_chunk(clock.robot(), 1), clock.now - 0.02, clock.now)
    clock.step()
    before = ex.scheduler.plan_end
    # joint_trajectory_controller ends a replaced goal with INVALID_GOAL (-1).
    assert ex.goal_result(1, motion=True, succeeded=False, error_code=-1) == ""
    ex.goal_failed(2, motion=False, kind="aborted", detail="hold")  # not a motion goal
    assert ex.scheduler.plan_end == before and ex.counts["fjt_goals_aborted"] == 1
    assert ex.counts["fjt_goals_preempted"] == 1
    # A result for the latest goal that is not a success is a failure, not a preemption.
    assert ex.goal_result(2, motion=True, succeeded=False, kind="canceled", detail="x")
    assert ex.counts["fjt_goals_canceled"] == 1 and ex.counts["fjt_goals_preempted"] == 1


@pytest.mark.parametrize("how", ["aborted", "rejected"])
def test_late_failure_of_a_motion_goal_restarts_from_the_robot(how):
    """The result of an aborted (or the response of a rejected) motion goal arrives after the
    executor, still following that plan, sent the hold goal at its end: the failure is counted as
    one, not as a preemption, and the next goal starts where the robot is (seen in CI under load:
    the next goal started 0.48 rad from the robot)."""
    ex = make(goals=True, amax=2.0)
    clock = Clock(ex)
    ex.submit(np.linspace(0.05, 0.48, 10)[:, None] * np.ones(3), T0, T0)
    clock.step(observe=False)
    motion_seq = ex.latest_goal
    for _ in range(40):  # the plan runs to its end and the hold goal goes out; robot stays
        ex.observe(clock.now, np.zeros(3))
        clock.step(observe=False)
    assert ex.latest_goal > motion_seq and not ex.scheduler.moving
    robot = ex.measured.copy()
    assert np.abs(ex.scheduler.last_command - robot).max() > 0.4
    if how == "aborted":  # PATH_TOLERANCE_VIOLATED
        warning = ex.goal_result(motion_seq, motion=True, succeeded=False, kind="aborted",
                                 detail="late abort", error_code=-4)
    else:
        warning = ex.goal_failed(motion_seq, motion=True, kind="rejected", detail="late")
    assert warning.startswith(f"FollowJointTrajectory goal {motion_seq}")
    assert ex.counts[f"fjt_goals_{how}"] == 1 and ex.counts["fjt_goals_preempted"] == 0
    ex.submit(np.linspace(0.01, 0.1, 10)[:, None] * np.ones(3) + robot, clock.now, clock.now)
    d = ex.step(clock.now)
    assert d.output is Output.GOAL
    assert np.abs(d.positions[0] - robot).max() <= 1.0 * DT + 1e-9


def test_stale_joint_states_send_a_braking_goal_at_once():
    ex = make(goals=True, amax=2.0, state_timeout=0.2)
    clock = Clock(ex)
    chunk = np.zeros((40, 3))
    chunk[:, 1] = np.linspace(0.02, 0.8, 40)
    ex.submit(chunk, T0 - 0.02, T0)
    clock.run(12)
    (_, running_t, _), = clock.goals
    ds = clock.run(20, observe=False)
    stale = next(i for i, d in enumerate(ds) if d.went_stale)
    assert ds[stale].output is Output.GOAL  # the braking goal, at the tick it went stale
    goal_ticks = [i for i, d in enumerate(ds) if d.output is Output.GOAL]
    assert goal_ticks[0] == stale and len(goal_ticks) == 2  # and the hold once at rest
    _, t, p = clock.goals[-2]
    assert t.size >= 2 and np.abs(p[-1] - p[0]).max() > 1e-3  # decelerates, not a jump
    steps = np.abs(np.diff(p, axis=0)).max(axis=1)
    assert (np.diff(steps) <= 1e-9).all()
    assert t[-1] < running_t[-1] - 0.2  # stops before the running goal would have


def test_wild_chunks_are_clamped_and_non_finite_ones_refused():
    ex = make(goals=True, amax=2.0)
    clock = Clock(ex)
    rng = np.random.default_rng(0)
    wild = rng.choice([-1e3, 1e3], size=(10, 3))
    wild[0] = 0.0
    assert ex.submit(wild, T0 - 0.02, T0).accepted
    nan = np.full((10, 3), np.nan)
    inf = np.zeros((10, 3))
    inf[3:, 2] = math.inf
    assert not ex.submit(nan, T0 - 0.02, T0).accepted
    assert not ex.submit(inf, T0 - 0.02, T0).accepted
    assert ex.stats.rejected["non_finite"] == 2
    clock.run(3)
    _, _, p = clock.goals[0]
    emb = ex.embodiment
    assert emb.within_limits(p).all()
    assert (np.isclose(p[-1], emb.lower) | np.isclose(p[-1], emb.upper)).all()


def test_a_goal_after_a_stall_starts_on_the_trajectory_the_controller_follows():
    """Chunks arrive between ticks, then the tick thread stalls for 6 ticks while the
    controller runs the last goal: the next goal starts where that goal has the arm by then."""
    ex = make(goals=True)
    clock = Clock(ex)

    def chunk(direction):
        return np.linspace(0.03, 0.3, 10)[:, None] * np.array([1.0, -1.0, 0.5]) * direction

    ex.submit(chunk(+1), clock.now - 0.02, clock.now)
    clock.run(3)
    ex.submit(chunk(+1) + ex.measured, clock.now - 0.02, clock.now)
    clock.step()
    ex.submit(chunk(-1) + ex.measured, clock.now - 0.02, clock.now)  # right after that tick
    n = len(clock.goals)
    clock.now += 6 * DT  # stalled
    ex.observe(clock.now, clock.robot())
    _, t, p = clock.goals[-1]
    expected = interp_positions(t, p, clock.now + DT)
    d = clock.step()
    assert d.output is Output.GOAL and len(clock.goals) == n + 1
    assert np.abs(d.positions[0] - expected).max() <= 1.0 * DT + 1e-9
