"""A node logger that goes quiet once the node's context is shut down (Ctrl-C).

rclpy's SIGINT handler shuts the context down while the node may still be starting: in its
constructor (the simulation's "episode started"), in ``on_configure`` (a policy loading) or
``on_activate`` (the warm-up). Every line logged after that fails to reach ``/rosout`` and rcl
prints "Failed to publish log message to rosout: publisher's context is invalid" beside it, and
rclpy's lifecycle code logs "Failed to complete transition ..." as an ERROR, only because it
cannot publish the transition event any more. Those lines describe the interrupt, not a fault,
so :class:`ShutdownQuietLogger` drops what is logged once the context is shut down: the node is
going away, and the interrupt itself is the user's.

The check is a logging filter (rclpy's extension point beside ``once`` and ``throttle``),
registered last so that it runs right before the line goes out: rclpy first finds the caller's
file and line, which for a new call site takes milliseconds (inspect reads the source), long
enough for a Ctrl-C to land between an earlier check and the line. This module is also listed
among rclpy's internal callers, so a line keeps the file, function and line of the code that
logged it (and ``once`` / ``throttle`` stay per call site).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from rclpy.context import Context
from rclpy.impl import rcutils_logger
from rclpy.impl.rcutils_logger import LoggingFilter, RcutilsLogger
from rclpy.node import Node

__all__ = ["ShutdownQuietLogger", "quiet_logging_after_shutdown"]

CONTEXT_UP = "while_context_ok"
"""The keyword (and filter name) that carries the context a line needs to be up."""


class _ContextUp(LoggingFilter):
    """Logs only while the context given as ``while_context_ok`` is up."""

    params: ClassVar[dict] = {CONTEXT_UP: None}

    @staticmethod
    def should_log(context: Any) -> bool:
        return context[CONTEXT_UP].ok()


# Last in the order rclpy applies filters, so the context is checked right before the C call.
rcutils_logger.supported_filters[CONTEXT_UP] = _ContextUp
# rclpy walks the stack past the files in this list to find a log call's caller, and keeps the
# list for third parties that wrap its logger ("Extend the list to preserve any filenames that
# may have been added by third parties").
rcutils_logger._internal_callers.append(os.path.realpath(__file__))


class ShutdownQuietLogger(RcutilsLogger):
    """rclpy's logger of ``name`` that logs nothing once ``context`` is shut down."""

    def __init__(self, name: str, context: Context) -> None:
        super().__init__(name)
        self._context = context

    def log(self, message: str, severity: Any, name: str | None = None, **kwargs: Any) -> bool:
        if not self._context.ok():
            return False  # it would reach no /rosout, and rcl would print that it did not
        return super().log(message, severity, name, **{CONTEXT_UP: self._context}, **kwargs)


def quiet_logging_after_shutdown(node: Node) -> None:
    """Make ``node.get_logger()`` (also the logger rclpy's own node code uses) a
    :class:`ShutdownQuietLogger`. Call it first in the node's constructor."""
    node._logger = ShutdownQuietLogger(node.get_logger().name, node.context)
