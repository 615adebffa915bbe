"""Polling helper for tests that wait on DDS traffic and node threads; a background spinner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def wait_for(pred: Callable[[], object], timeout: float, poll: float = 0.02) -> bool:
    """True as soon as ``pred()`` is truthy; False once ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(poll)
    return False


class Spinner:
    """Spins ``executor`` in a daemon thread; :meth:`close` stops spinning, then shuts it down.

    In that order: :class:`ate_ros.ros.spin.DrainingMultiThreadedExecutor`'s ``shutdown`` drains
    its thread pool first, and a thread still spinning would then hand that pool new work
    ("cannot schedule new futures after shutdown").
    """

    def __init__(self, executor: Any) -> None:
        from rclpy.task import Future

        self.executor = executor
        self._stop = Future()
        self.thread = threading.Thread(target=executor.spin_until_future_complete,
                                       args=(self._stop,), daemon=True)
        self.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        if not self._stop.done():
            self._stop.set_result(None)  # wakes the executor: its spin loop ends
        self.thread.join(timeout)
        self.executor.shutdown()
        from ate_ros.ros.spin import close_unstarted_callbacks

        close_unstarted_callbacks(self.executor)  # no "never awaited" warnings at exit
