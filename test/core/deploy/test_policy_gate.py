"""policy_node's run-time decisions on a stepped clock (ROS-free): :class:`PolicyGate`.

The cases the DDS tests of policy_node check end to end: stale observations are refused and
never reach the model, nothing runs while paused (inactive, or ``require_goal`` without a goal),
the rate limit, and how a RunPolicy goal ends (cancel, duration, preemption, deactivation).
"""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.deploy.policy_gate import (
    Admission,
    Health,
    PolicyGate,
    ood_score,
    ood_window,
)
from ate_ros.core.execution import GoalOutcome


def active_gate(require_goal: bool = False, **kw) -> PolicyGate:
    gate = PolicyGate(**kw)
    gate.activate(require_goal)
    return gate


def test_stale_observations_are_refused_and_counted():
    gate = active_gate(max_obs_age=0.5)
    assert gate.admit(now=10.0, stamp=7.0) is Admission.STALE
    assert gate.admit(now=10.0, stamp=9.5) is Admission.RUN  # exactly max_obs_age old
    assert gate.refused_stale == 1
    # Stale is decided (and counted) before anything else, paused or not.
    gate.deactivate()
    assert gate.admit(now=10.0, stamp=9.0) is Admission.STALE and gate.refused_stale == 2


def test_nothing_runs_while_inactive_or_without_a_goal():
    gate = PolicyGate()
    assert gate.admit(1.0, 1.0) is Admission.PAUSED  # not activated yet
    gate.activate(require_goal=True)
    assert gate.admit(1.0, 1.0) is Admission.PAUSED
    assert gate.paused == 2 and gate.chunks == 0
    goal, ended = gate.start_goal(now=1.0, max_duration=0.0, instruction="wave")
    assert ended == [] and gate.instruction == "wave"
    assert gate.admit(1.1, 1.1) is Admission.RUN
    gate.end_goal(GoalOutcome.CANCELED, "canceled")
    assert gate.admit(1.2, 1.2) is Admission.PAUSED and gate.instruction is None
    gate.activate(require_goal=False)
    assert gate.admit(1.3, 1.3) is Admission.RUN
    gate.deactivate()
    assert gate.admit(1.4, 1.4) is Admission.PAUSED


def test_rate_limit_counts_from_the_last_inference():
    gate = active_gate(rate_hz=5.0)
    stamps = np.round(np.arange(0.0, 1.01, 0.05), 6)  # observations at 20 Hz
    ran = []
    for t in stamps:
        if gate.admit(t, t) is Admission.RUN:
            gate.inferred(t)
            ran.append(float(t))
    assert ran == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    gate.rate_hz = 0.0  # every observation
    assert gate.admit(1.05, 1.05) is Admission.RUN


def test_a_chunk_finished_after_a_pause_is_not_published():
    gate = active_gate()
    assert gate.admit(1.0, 1.0) is Admission.RUN
    assert gate.published() and gate.chunks == 1
    assert gate.admit(1.1, 1.1) is Admission.RUN
    gate.deactivate()  # while the model ran
    assert not gate.published() and gate.chunks == 1


def test_goal_ends_after_its_duration_with_feedback_per_chunk():
    gate = active_gate(require_goal=True)
    goal, _ = gate.start_goal(now=10.0, max_duration=1.0)
    assert gate.poll_goal(goal, 10.02, False).feedback == 0  # first report
    assert gate.poll_goal(goal, 10.04, False).feedback is None  # nothing new
    gate.published()
    gate.published()
    assert gate.poll_goal(goal, 10.5, False).feedback == 2
    assert gate.poll_goal(goal, 10.98, False).end is None
    step = gate.poll_goal(goal, 11.0, False)
    assert (step.end.outcome, step.end.message) == (GoalOutcome.SUCCEEDED, "duration reached")
    assert not gate.running and gate.goal is None and gate.is_latest(goal)


def test_goal_without_duration_runs_until_canceled():
    gate = active_gate(require_goal=True)
    goal, _ = gate.start_goal(now=0.0, max_duration=0.0)
    assert gate.poll_goal(goal, 1e6, False).end is None
    step = gate.poll_goal(goal, 1e6, True)
    assert (step.end.goal, step.end.outcome, step.end.message) == (
        goal, GoalOutcome.CANCELED, "canceled")
    assert not gate.running


def test_new_goal_preempts_and_deactivation_aborts():
    gate = active_gate(require_goal=True)
    first, _ = gate.start_goal(now=0.0, max_duration=0.0)
    second, ended = gate.start_goal(now=1.0, max_duration=0.0)
    assert [(e.goal, e.outcome, e.message) for e in ended] == [
        (first, GoalOutcome.ABORTED, "preempted by a new goal")]
    assert gate.running and gate.goal is second and not gate.is_latest(first)
    end = gate.deactivate()
    assert (end.goal, end.outcome, end.message) == (second, GoalOutcome.ABORTED, "deactivated")
    # Deactivation publishes the stop request itself: the goal's end does not.
    assert not gate.is_latest(second)
    assert gate.poll_goal(second, 2.0, False).end.message == "deactivated"


def test_goal_on_an_inactive_node_ends_at_once():
    gate = PolicyGate()
    goal, ended = gate.start_goal(now=0.0, max_duration=1.0)
    assert [(e.goal, e.message) for e in ended] == [(goal, "node not active")]
    assert gate.goal is None and not gate.running


def test_ood_window_truncates_or_holds_the_last_point():
    chunk = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(ood_window(chunk, 2), chunk[:2])
    held = ood_window(chunk, 6)
    assert held.shape == (6, 3)
    np.testing.assert_array_equal(held[4:], np.repeat(chunk[-1:], 2, 0))


def test_ood_score_scores_the_vaes_window_and_is_nan_without_one():
    seen = []

    class Vae:
        chunk_size = 6

        def ood_score(self, x):
            seen.append(tuple(x.shape))
            return x.sum(dim=(1, 2))

    chunk = np.ones((4, 3))
    assert np.isnan(ood_score(None, chunk))
    assert ood_score(Vae(), chunk) == pytest.approx(18.0) and seen == [(1, 6, 3)]


def test_health_reports_errors_first_then_inactive_stale_and_paused():
    gate = PolicyGate(max_obs_age=0.5)
    assert gate.health() == (Health.OK, "inactive")
    gate.admit(now=10.0, stamp=1.0)  # stale, counted even while inactive
    assert gate.health() == (Health.OK, "inactive")
    assert gate.health(errors=2) == (Health.ERROR, "2 inference errors")
    gate.activate(require_goal=True)
    assert gate.health() == (Health.WARN, "1 stale observations refused")
    gate.refused_stale = 0
    assert gate.health() == (Health.OK, "paused (holding)")
    gate.start_goal(now=0.0, max_duration=0.0)
    assert gate.health() == (Health.OK, "running")
