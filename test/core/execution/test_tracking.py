"""The executor's check that the robot follows its commands, on a stepped clock (ROS-free).

joint_states carry the time they were measured (``header.stamp``); the check compares them with
the command that was due then. The cases: a robot that stops is caught and commanded from where
it is; a robot that follows is never caught, however late its joint_states arrive (the failure
of a guard timed at receipt, reverted in 7c23e4c); unstamped joint_states, dry runs and
``max_tracking_error: 0`` are never checked.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.executor_clock import DT, T0, Clock, make, ramp

from ate_ros.core.execution import GoalOutcome, Output
from ate_ros.core.execution.tracking import STAMP_SKEW, TrackingCheck


def _commands(clock: Clock) -> tuple[np.ndarray, np.ndarray]:
    """Due times and positions of every command so far."""
    ds = [d for d in clock.decisions if d.command is not None]
    return np.array([d.now + DT for d in ds]), np.stack([d.command for d in ds])


@pytest.mark.parametrize("goals", [False, True], ids=["topic", "action"])
def test_a_robot_that_stops_is_caught_and_commanded_from_where_it_is(goals):
    """The controller takes the commands but the robot stays (an e-stop; a goal the controller
    failed whose result has not come). At the first tick at which the command due when the robot
    was measured is further from it than the allowed lag plus max_tracking_error, the executor
    drops the plan, aborts the running goal and holds where the robot is (a braking goal with
    FollowJointTrajectory); the next chunk starts there."""
    ex = make(goals=goals)
    clock = Clock(ex)
    robot = np.zeros(3)
    allowed = 1.0 * ex.config.tracking_lag + ex.config.max_tracking_error
    _, goal = ex.start_goal(np.linspace(0.048, 0.96, 20)[:, None] * np.ones(3), T0, T0)
    for _ in range(40):
        stamp = clock.now - 0.01  # measured just before the tick
        d = clock.step(observe=False)
        if d.not_following:
            break
        ex.observe(clock.now, robot, stamp=clock.now - 0.01)
        due, cmds = _commands(clock)
        ref = np.array([np.interp(stamp, due, cmds[:, j]) for j in range(3)])
        assert np.abs(ref - robot).max() <= allowed + 1e-9  # not caught while within the bound
    else:
        pytest.fail("the robot that never moved was not caught")
    assert "j0" in d.not_following and ex.counts["tracking_resets"] == 1
    [end] = d.ended
    assert (end.goal, end.outcome) == (goal, GoalOutcome.ABORTED)
    assert "does not follow" in end.message
    assert d.output is (Output.GOAL if goals else Output.STREAM)
    np.testing.assert_allclose(d.positions, np.broadcast_to(robot, d.positions.shape))
    ex.observe(clock.now, robot, stamp=clock.now - 0.01)
    assert ex.submit(ramp(robot, 0.1, 10), clock.now, clock.now).accepted
    d = clock.step(observe=False)
    assert np.abs(d.positions[0] - robot).max() <= 1.0 * DT + 1e-9
    assert ex.counts["tracking_resets"] == 1


@pytest.mark.parametrize("late_ticks", [0, 4, 8])
def test_a_following_robot_is_never_caught_however_late_its_joint_states(late_ticks):
    """The robot follows exactly; its joint_states reach the executor ``late_ticks`` ticks
    (up to 0.4 s, inside state_timeout) after they were measured, as on a loaded machine. Timed
    at receipt they would look 0.4 rad behind at full speed; by their stamp they are on time."""
    ex = make()
    clock = Clock(ex)
    chunk = np.zeros((36, 3))
    chunk[:, 2] = np.linspace(1.0, 36.0, 36) * DT * 1.0  # at joint 2's velocity limit
    assert ex.submit(chunk, T0, T0).accepted
    sent: list[tuple[float, np.ndarray]] = []  # (measured at, position)
    for _ in range(40):
        d = clock.step(observe=False)
        sent.append((d.now + DT, d.command))  # the robot is at the command when it is due
        if len(sent) > late_ticks:
            stamp, q = sent[-1 - late_ticks]
            ex.observe(clock.now, q, stamp=stamp)
        assert not d.not_following
    assert ex.counts["tracking_checks"] > 20 and ex.counts["tracking_resets"] == 0


@pytest.mark.parametrize(("trail_ticks", "caught"), [(4, False), (8, True)])
def test_a_robot_trailing_by_the_allowed_lag_is_not_taken_for_one_that_stopped(
        trail_ticks, caught):
    """A robot that follows at full speed 4 ticks (tracking_lag, 0.2 s) behind the commands
    is never caught; one 8 ticks behind is. Measured and stamped every tick."""
    ex = make()
    clock = Clock(ex)
    chunk = np.zeros((36, 3))
    chunk[:, 0] = np.linspace(1.0, 36.0, 36) * DT * 0.5  # 0.5 rad/s, well inside the limit
    chunk[:, 2] = np.linspace(1.0, 36.0, 36) * DT * 1.0  # at joint 2's velocity limit
    assert ex.submit(chunk, T0, T0).accepted
    commands = [np.zeros(3)] * trail_ticks
    resets = []
    for _ in range(40):
        d = clock.step(observe=False)
        commands.append(d.command)
        ex.observe(clock.now, commands[-1 - trail_ticks], stamp=clock.now)
        resets.append(bool(d.not_following))
    assert any(resets) == caught
    assert (ex.counts["tracking_resets"] >= 1) == caught


@pytest.mark.parametrize("case", ["unstamped", "stamp_ahead", "dry_run", "disabled"])
def test_what_is_never_checked(case):
    """A robot that never moves is not checked when its joint_states have no stamp, a stamp
    ahead of the executor's clock (another clock), in a dry run, or with max_tracking_error 0."""
    cfg = {"dry_run": {"dry_run": True}, "disabled": {"max_tracking_error": 0.0}}.get(case, {})
    ex = make(**cfg)
    clock = Clock(ex)
    assert ex.submit(ramp(np.zeros(3), 0.9, 18), T0, T0).accepted
    for _ in range(30):
        d = clock.step(observe=False)
        stamp = {"unstamped": None, "stamp_ahead": clock.now + 2 * STAMP_SKEW}.get(case,
                                                                                   clock.now)
        ex.observe(clock.now, np.zeros(3), stamp=stamp)
        assert not d.not_following
    assert ex.counts["tracking_checks"] == 0 and ex.counts["tracking_resets"] == 0


def test_the_commands_kept_follow_restarts_and_clock_jumps():
    check = TrackingCheck(["a", "b"])
    vmax = np.ones(2)
    assert check.commanded_at(0.0) is None
    assert check.check(0.0, np.zeros(2), vmax, 0.1, 0.2) is None
    check.record(1.0, np.zeros(2), keep=1.0)
    check.record(1.1, np.array([0.1, -0.1]), keep=1.0)
    np.testing.assert_allclose(check.commanded_at(1.05), [0.05, -0.05])
    assert check.commanded_at(0.99) is None  # before the first command kept: not judged
    np.testing.assert_allclose(check.commanded_at(5.0), [0.1, -0.1])  # the last one holds
    assert check.check(1.1, np.array([0.1, 0.15]), vmax, max_error=0.1, lag=0.2) == ""
    assert "joint b was 0.400" in check.check(1.1, np.array([0.1, 0.3]), vmax, max_error=0.1,
                                              lag=0.2)
    check.record(2.5, np.ones(2), keep=1.0)  # the earlier ones are more than 1 s older: dropped
    assert check.commanded_at(1.05) is None
    check.record(2.0, np.zeros(2), keep=1.0)  # the clock went back: the rest no longer applies
    assert check.commanded_at(2.4) is not None and check.commanded_at(1.99) is None
    np.testing.assert_allclose(check.commanded_at(2.4), [0.0, 0.0])
