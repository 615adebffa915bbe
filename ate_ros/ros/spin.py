"""The body of every node's ``main()``: init, build, spin, shut down cleanly."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

GIL_SWITCH_INTERVAL_S = 5e-4
"""Python's default is 5 ms. Inference is hundreds of small torch ops, each re-taking the GIL
from DDS callback and simulation threads: with 5 ms slices that convoy made one chunk take
~260 ms in the one-process graph instead of ~16 ms (85 ms at 0.5 ms; 0.1 ms is no better)."""


def prefer_short_gil_slices() -> None:
    """Shorten the interpreter's thread switch interval (process-wide) for multi-threaded nodes."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None,
              before_destroy: Callable[[Node], None] | None = None) -> int:
    """Run one node on a MultiThreadedExecutor until Ctrl-C or an external shutdown.

    A MultiThreadedExecutor for every node: reentrant groups (action servers, inference threads)
    only run concurrently on it, and it costs nothing for nodes that do not use them.
    ``before_destroy`` stops node-owned threads before the node's entities are destroyed.
    """
    prefer_short_gil_slices()
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor()
    try:
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        if node is not None:
            if before_destroy is not None:
                before_destroy(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
