"""Polling helper for tests that wait on DDS traffic and node threads."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(pred: Callable[[], object], timeout: float, poll: float = 0.02) -> bool:
    """True as soon as ``pred()`` is truthy; False once ``timeout`` seconds have passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(poll)
    return False
