"""The body of every node's ``main()``: init, build, spin, shut down cleanly."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None,
              before_destroy: Callable[[Node], None] | None = None) -> int:
    """Run one node on a MultiThreadedExecutor until Ctrl-C or an external shutdown.

    A MultiThreadedExecutor for every node: reentrant groups (action servers, inference threads)
    only run concurrently on it, and it costs nothing for nodes that do not use them.
    ``before_destroy`` stops node-owned threads before the node's entities are destroyed.
    """
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
