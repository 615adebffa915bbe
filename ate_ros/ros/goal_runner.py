"""The running goal of an action server, as a coroutine that awaits its end.

Both action servers of the package (executor_node's ExecuteChunk, policy_node's RunPolicy) run
one goal at a time and never block an executor thread for it: the execute callback starts the
goal (:meth:`GoalRunner.begin`), awaits ``run.done``, and settles the goal handle
(:func:`settle`). Whatever ends the goal (a control tick, a new goal, deactivation, another
thread) calls :meth:`GoalRunner.finish`, once; a steady-clock timer polls the running goal
(cancel, duration, feedback), so a cancel is noticed while a simulated clock is paused.

Locking: the runner shares the owner's lock (a reentrant one: ``finish`` may be called with it
held), so the running goal changes together with the state it guards.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.task import Future

from ate_ros.core.execution.goals import GoalOutcome
from ate_ros.ros.spin import unless_shutdown

__all__ = ["GOAL_POLL_PERIOD", "GoalRun", "GoalRunner", "result_code", "settle"]

GOAL_POLL_PERIOD = 0.02
"""Steady-clock seconds between checks of the running goal (cancel, end, feedback)."""


@dataclass
class GoalRun:
    """One goal: its handle, the core's bookkeeping of it, and the future of its end."""

    handle: Any
    data: Any
    done: Future = field(default_factory=Future)


class GoalRunner:
    """One action server's running goal. See the module docstring.

    Args:
        node: Owns the poll timer; its executor is woken when a goal ends.
        poll: Called with the running goal on every poll (steady clock).
        lock: The owner's reentrant lock.
        on_end: Called (lock held) when the running goal ends, before its coroutine resumes.
        period: Seconds between polls.
    """

    def __init__(self, node: Node, poll: Callable[[GoalRun], None], lock: threading.RLock,
                 on_end: Callable[[GoalRun], None] | None = None,
                 period: float = GOAL_POLL_PERIOD) -> None:
        self._node = node
        self._poll_fn = poll
        self._lock = lock
        self._on_end = on_end
        self.current: GoalRun | None = None
        # Wall (steady) time: a goal notices a cancel even while a simulated clock is paused.
        self._timer = node.create_timer(period, self._poll,
                                        callback_group=MutuallyExclusiveCallbackGroup(),
                                        clock=Clock(clock_type=ClockType.STEADY_TIME),
                                        autostart=False)

    def begin(self, handle: Any, data: Any, poll: bool = True) -> GoalRun:
        """Make a new goal the running one (and start polling it, unless ``poll`` is False)."""
        run = GoalRun(handle, data)
        with self._lock:
            self.current = run
            if poll:
                with contextlib.suppress(InvalidHandle):  # destroyed with the node
                    self._timer.reset()
        self.wake()  # multi-threaded: the coroutine may start waiting without the timer
        return run

    def find(self, data: Any) -> GoalRun | None:
        """The running goal if its bookkeeping is ``data``."""
        run = self.current
        return run if run is not None and run.data is data else None

    def finish(self, run: GoalRun | None, result: Any) -> bool:
        """Resolve ``run``'s end with ``result`` (once; from any thread). Returns whether it
        was still running."""
        if run is None:
            return False
        with self._lock:
            if run.done.done():
                return False
            if self.current is run:
                self.current = None
                with contextlib.suppress(InvalidHandle):
                    self._timer.cancel()
                if self._on_end is not None:
                    self._on_end(run)
            run.done.set_result(result)
        self.wake()  # resume the coroutine now (when resolved from another thread)
        return True

    def finish_ended(self, ended: list[Any]) -> None:
        """Resolve the running goal if the core ended it (``GoalEnd``s, each its own result)."""
        for end in ended:
            self.finish(self.find(end.goal), end)

    def wake(self) -> None:
        executor = self._node.executor
        if executor is not None:
            with contextlib.suppress(InvalidHandle):  # the executor is shutting down
                executor.wake()

    def _poll(self) -> None:
        run = self.current
        if run is not None:
            self._poll_fn(run)


def settle(handle: Any, outcome: GoalOutcome, context: Any) -> None:
    """Report ``outcome`` on the goal handle: succeeded, canceled (only when a cancel was
    requested, as the action protocol requires) or aborted; nothing after Ctrl-C."""
    with unless_shutdown(context):
        if outcome is GoalOutcome.SUCCEEDED:
            handle.succeed()
        elif outcome is GoalOutcome.CANCELED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()


def result_code(result_type: Any, outcome: GoalOutcome) -> int:
    """``outcome`` as the action's result constant of the same name (else ABORTED)."""
    return getattr(result_type, outcome.name, result_type.ABORTED)
