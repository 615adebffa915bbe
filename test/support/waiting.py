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


def action_client_beside(node: Any, action_type: Any, name: str) -> Any:
    """An ActionClient on a node of its own, handed to ``node``'s executor once fully built.

    rclpy (9.1, Kilted) registers an ActionClient with its node before it creates the lock that
    ``is_ready`` takes. Built on a node that another thread is spinning, the executor can reach
    the half-made client and stop spinning with ``AttributeError: ... no attribute '_lock'``
    (seen here under load: the goal response then never arrives). The helper node is destroyed
    with the context.
    """
    import uuid

    import rclpy
    from rclpy.action import ActionClient

    own = rclpy.create_node(f"action_client_{uuid.uuid4().hex[:8]}", context=node.context)
    client = ActionClient(own, action_type, name)
    node.executor.add_node(own)
    return client


def action_graph_report(client: Any) -> str:
    """What the client's node sees of its action server: for a failed ``wait_for_server``."""
    from rclpy.action.graph import get_action_names_and_types

    node, name = client._node, client._action_name
    base = name if name.startswith("/") else f"/{name}"
    services = {n for n, _ in node.get_service_names_and_types() if n.startswith(f"{base}/")}
    return (f"actions seen: {get_action_names_and_types(node)}; services under {base}: "
            f"{sorted(services)}; feedback publishers "
            f"{node.count_publishers(f'{base}/_action/feedback')}, status publishers "
            f"{node.count_publishers(f'{base}/_action/status')}; "
            f"threads: {sorted(t.name for t in threading.enumerate())}")
