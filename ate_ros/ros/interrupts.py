"""The first Ctrl-C as a request to stop, not an exception (no rclpy here: the node entry
points use it before anything heavy is imported, :mod:`ate_ros.nodes.entry`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Interrupts", "quiet_first_sigint"]


@dataclass
class Interrupts:
    """How many SIGINTs came within :func:`quiet_first_sigint`'s block."""

    count: int = 0


@contextlib.contextmanager
def quiet_first_sigint() -> Iterator[Interrupts]:
    """Within this block, the first SIGINT raises nothing; the next ones raise KeyboardInterrupt.
    Yields the count, so the block can ask whether one came.

    Enter it before ``rclpy.init``: rclpy's C handler (installed by init) shuts the default
    context down, wakes the executors and then calls the Python handler installed before it, so
    spinning ends without an exception landing in the middle of a callback. Installing a Python
    handler after ``rclpy.init`` would replace rclpy's handler instead. The previous Python
    handler is restored on exit. Does nothing outside the main thread (Python only lets the
    main thread install signal handlers).
    """
    seen = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def on_sigint(signum: int, frame: Any) -> None:
        seen.count += 1
        if seen.count > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
