"""policy_node's run-time decisions, ROS-free: which observations reach the model, when a
RunPolicy goal ends, and which window of a chunk the OOD monitor scores.

:class:`PolicyGate` is driven by explicit times (``now``, observation stamps: seconds on the
node clock), so a test steps it without a clock or a model:

    gate = PolicyGate(max_obs_age=0.5, rate_hz=5.0)
    gate.activate(require_goal=False)
    gate.admit(now=1.0, stamp=0.9)      # Admission.RUN: run the model on it
    gate.inferred(0.9)
    gate.admit(now=1.05, stamp=1.0)     # Admission.TOO_SOON (rate_hz)

Not thread-safe: the node calls it under one lock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ate_ros.core.execution.goals import GoalEnd, GoalOutcome

__all__ = ["Admission", "GoalStep", "Health", "PolicyGate", "PolicyGoal", "ood_score",
           "ood_window"]


class Admission(enum.Enum):
    """What happens to one observation."""

    RUN = "run"  # the model runs on it
    STALE = "stale"  # older than max_obs_age: refused and counted
    PAUSED = "paused"  # not active, or no running goal with require_goal
    TOO_SOON = "too_soon"  # within 1 / rate_hz of the last inference's observation


class Health(enum.IntEnum):
    """A node's health for /diagnostics, in ``diagnostic_msgs/DiagnosticStatus``'s order."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class PolicyGoal:
    """Book-keeping of the running RunPolicy goal."""

    seq: int
    start: float
    start_chunks: int
    max_duration: float
    last_feedback: int = -1  # chunk count at the last feedback


@dataclass(frozen=True)
class GoalStep:
    """One check of the running goal: its end, or the chunk count to report as feedback."""

    end: GoalEnd | None = None
    feedback: int | None = None


class PolicyGate:
    """Staleness and rate gating, the active/running state and the RunPolicy goal's end.

    Args:
        max_obs_age: Observations older than this (s) are refused.
        rate_hz: Largest inference rate; 0 runs on every observation.
    """

    def __init__(self, max_obs_age: float = 0.5, rate_hz: float = 0.0) -> None:
        self.max_obs_age = max_obs_age
        self.rate_hz = rate_hz
        self.active = False  # between activation and deactivation
        self.running = False  # chunks are published (cleared when a goal ends)
        self.goal: PolicyGoal | None = None
        self.instruction: str | None = None  # the running goal's, when it gave one
        self.chunks = 0
        self.refused_stale = 0
        self.paused = 0  # observations not run on because the node was paused
        self._seq = 0
        self._last_infer_stamp = -math.inf

    # ----- lifecycle ----------------------------------------------------------------------
    def activate(self, require_goal: bool) -> None:
        """Active; running at once unless chunks need a RunPolicy goal."""
        self.active = True
        self.running = not require_goal

    def deactivate(self) -> GoalEnd | None:
        """Inactive and paused; the running goal (if any) ends, aborted (and is no longer the
        latest: deactivation publishes the stop request itself)."""
        self.active = self.running = False
        self._seq += 1
        return self.end_goal(GoalOutcome.ABORTED, "deactivated")

    # ----- observations -------------------------------------------------------------------
    def admit(self, now: float, stamp: float) -> Admission:
        """Whether the model runs on an observation stamped ``stamp``, received at ``now``."""
        if now - stamp > self.max_obs_age:
            self.refused_stale += 1
            return Admission.STALE
        if not self.running:
            self.paused += 1
            return Admission.PAUSED
        if self.rate_hz > 0 and stamp - self._last_infer_stamp < 1.0 / self.rate_hz - 1e-6:
            return Admission.TOO_SOON
        return Admission.RUN

    def inferred(self, stamp: float) -> None:
        """The model ran on the observation stamped ``stamp`` (the rate counts from here)."""
        self._last_infer_stamp = stamp

    def published(self) -> bool:
        """Whether a chunk the model just produced may go out (and count); False when the node
        was paused while the model ran."""
        if not self.running:
            return False
        self.chunks += 1
        return True

    # ----- RunPolicy goal -----------------------------------------------------------------
    def start_goal(self, now: float, max_duration: float, instruction: str = ""
                   ) -> tuple[PolicyGoal, list[GoalEnd]]:
        """A new goal: it preempts the running one. Returns it and the goals that end now: the
        preempted one and, when the node is not active, the new one itself."""
        self._seq += 1
        goal = PolicyGoal(seq=self._seq, start=now, start_chunks=self.chunks,
                          max_duration=float(max_duration))
        previous, self.goal = self.goal, goal
        ended = [] if previous is None else [GoalEnd(previous, GoalOutcome.ABORTED,
                                                     "preempted by a new goal")]
        if not self.active:
            self.goal = None
            return goal, [*ended, GoalEnd(goal, GoalOutcome.ABORTED, "node not active")]
        self.instruction = instruction or None
        self.running = True
        return goal, ended

    def poll_goal(self, goal: PolicyGoal, now: float, cancel_requested: bool) -> GoalStep:
        """Check ``goal`` (the goal timer): cancel, preemption/deactivation, its duration, or
        feedback when chunks were published since the last report."""
        if cancel_requested:
            return GoalStep(end=self.end_goal(GoalOutcome.CANCELED, "canceled", goal))
        if goal is not self.goal or not self.active:
            return GoalStep(end=GoalEnd(goal, GoalOutcome.ABORTED, "deactivated"))
        if goal.max_duration > 0 and now - goal.start >= goal.max_duration:
            return GoalStep(end=self.end_goal(GoalOutcome.SUCCEEDED, "duration reached", goal))
        if self.chunks != goal.last_feedback:
            goal.last_feedback = self.chunks
            return GoalStep(feedback=self.chunks - goal.start_chunks)
        return GoalStep()

    def end_goal(self, outcome: GoalOutcome, reason: str, goal: PolicyGoal | None = None
                 ) -> GoalEnd | None:
        """End ``goal`` (default: the running one); chunks stop until the next goal."""
        goal = self.goal if goal is None else goal
        if goal is None:
            return None
        if goal is self.goal:
            self.goal = None
            self.running = False
            self.instruction = None
        return GoalEnd(goal, outcome, reason)

    def is_latest(self, goal: PolicyGoal) -> bool:
        """No newer goal started after ``goal`` (its end then publishes the stop request)."""
        return goal.seq == self._seq

    # ----- diagnostics --------------------------------------------------------------------
    def health(self, errors: int = 0) -> tuple[Health, str]:
        """The node's health and its one-line message, given its ``errors`` (failed
        inferences): errors first, then inactive, stale refusals, running or paused."""
        if errors:
            return Health.ERROR, f"{errors} inference errors"
        if not self.active:
            return Health.OK, "inactive"
        if self.refused_stale:
            return Health.WARN, f"{self.refused_stale} stale observations refused"
        return Health.OK, "running" if self.running else "paused (holding)"


def ood_window(chunk: np.ndarray, n: int) -> np.ndarray:
    """The (n, D) window of a (H, D) chunk the OOD monitor scores: the VAE's window may differ
    from the policy's H, so the chunk is truncated, or its last point held."""
    if len(chunk) >= n:
        return chunk[:n]
    return np.concatenate([chunk, np.repeat(chunk[-1:], n - len(chunk), 0)])


def ood_score(alignment: Any, chunk: np.ndarray) -> float:
    """Latent distance of a (H, 128) unified chunk to the adaptation distribution, from the
    stage-2 VAE ``alignment`` (its ``chunk_size`` window); NaN without one."""
    if alignment is None:
        return float("nan")
    import torch  # only where a VAE is loaded

    window = ood_window(chunk, alignment.chunk_size)
    with torch.no_grad():
        return float(alignment.ood_score(torch.as_tensor(window[None], dtype=torch.float32))[0])
