"""policy_nodes in a context of their own beside a peer node, spun by real executors, and torn
down in the order that leaves nothing behind (the policy_node tests' shared fixture body)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from support.waiting import Spinner

EXECUTORS = ("multi_threaded", "single_threaded")


@contextlib.contextmanager
def policy_node_graph(executors: str = EXECUTORS[0]
                      ) -> Iterator[tuple[Callable[..., Any], Any]]:
    """Yields ``(make, peer)``: ``make(config, **kwargs)`` builds a
    :class:`~ate_ros.nodes.policy_node.PolicyNode` from a ``PolicyNodeConfig`` (``kwargs`` go to
    its constructor: ``policy_factory``, ``node_name``) and spins it; ``peer`` is a plain node
    for the test's publishers, subscriptions and clients.

    ``multi_threaded``: every node on one MultiThreadedExecutor (as ``ate-ros run`` spins the
    graph); ``single_threaded``: the policy nodes alone on a SingleThreadedExecutor (as their
    own process spins them), the peer on another one.

    On exit the spinners stop first (a thread still spinning would hand the shut-down pool new
    work: "cannot schedule new futures after shutdown"), then each policy node's inference
    stops and the nodes are destroyed, then the context.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    from ate_ros.nodes.policy_node import PolicyNode

    if executors not in EXECUTORS:
        raise ValueError(f"executors must be one of {EXECUTORS}, got {executors!r}")
    context = rclpy.Context()
    rclpy.init(context=context)
    if executors == "single_threaded":
        ex = SingleThreadedExecutor(context=context)
        peer_ex = SingleThreadedExecutor(context=context)
    else:
        ex = peer_ex = MultiThreadedExecutor(num_threads=3, context=context)
    peer = rclpy.create_node("peer", context=context)
    peer_ex.add_node(peer)
    made: list[PolicyNode] = []

    def make(config: Any, **kwargs: Any) -> PolicyNode:
        node = PolicyNode(config, context=context, **kwargs)
        ex.add_node(node)
        made.append(node)
        return node

    spinners = [Spinner(e) for e in {ex, peer_ex}]
    try:
        yield make, peer
    finally:
        for s in spinners:
            s.close()
        for n in made:
            n.stop_inference()
            n.destroy_node()
        peer.destroy_node()
        rclpy.shutdown(context=context)
