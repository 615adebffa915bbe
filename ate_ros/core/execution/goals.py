"""How a supervised goal ends (ExecuteChunk, RunPolicy), in ROS-free terms.

The nodes map :class:`GoalOutcome` onto their action's result constants by name
(``ExecuteChunk.Result.PREEMPTED``); an action without a constant of that name reports it as
``ABORTED``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["GoalEnd", "GoalOutcome"]


class GoalOutcome(enum.Enum):
    """Why a goal ended."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    CANCELED = "canceled"
    PREEMPTED = "preempted"
    ABORTED = "aborted"


@dataclass(frozen=True)
class GoalEnd:
    """A goal the core has ended: the node resolves the goal's coroutine with it.

    Attributes:
        goal: The core's bookkeeping of that goal (identity matters, not value).
        outcome: How it ended.
        message: The reason, for the action result and the log.
    """

    goal: Any
    outcome: GoalOutcome
    message: str
