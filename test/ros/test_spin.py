"""ate_ros.ros.spin: what a node's main leaves behind at Ctrl-C."""

from __future__ import annotations

import gc
import time
import warnings

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.task import Future  # noqa: E402

from ate_ros.ros.spin import close_unstarted_callbacks  # noqa: E402

pytestmark = pytest.mark.ros


def _never_awaited_after_exit(close: bool) -> tuple[int, list[str]]:
    """Take a timer's callback (as spin_once does) and stop before running it, as a Ctrl-C
    between the two statements would; also leave a goal-like coroutine suspended mid-await.
    Returns (closed, the "never awaited" warnings once the executor is collected)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("spin_probe", context=context)
    node.create_timer(0.001, lambda: None)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    pending = Future()

    async def goal() -> None:
        await pending

    started = executor.create_task(goal)
    executor.spin_once(timeout_sec=0.5)  # runs the goal up to its await
    assert not started.done()
    time.sleep(0.01)
    for _ in range(5):  # the suspended goal is offered first (entity None), then the timer
        taken, entity, _node = executor.wait_for_ready_callbacks(timeout_sec=1.0)
        if entity is not None:
            break
    assert entity is not None and not taken.done()
    del taken, entity, _node
    executor.shutdown()
    closed = close_unstarted_callbacks(executor) if close else 0
    node.destroy_node()
    rclpy.shutdown(context=context)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del executor, started
        gc.collect()
    return closed, [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_unstarted_callback_is_closed_not_left_for_exit():
    # Without the clean-up this is what a node printed on Ctrl-C in CI.
    _, warned = _never_awaited_after_exit(close=False)
    assert warned, "the probe no longer reproduces rclpy's leftover handler"
    closed, warned = _never_awaited_after_exit(close=True)
    assert closed == 1 and not warned  # the taken timer only; the started goal is left alone


def test_close_unstarted_callbacks_tolerates_other_executors():
    class Bare:
        pass

    assert close_unstarted_callbacks(Bare()) == 0


def test_graph_executor_kinds():
    """``single`` (what ate-ros run spins) and ``multi`` (the earlier 4-thread one) spin a
    node's callbacks; an unknown kind names the choices."""
    from rclpy.executors import MultiThreadedExecutor

    from ate_ros.ros.spin import GRAPH_EXECUTORS, graph_executor

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("graph_probe", context=context)
        for kind, cls in zip(GRAPH_EXECUTORS, (SingleThreadedExecutor, MultiThreadedExecutor)):
            ex = graph_executor(context, kind)
            assert isinstance(ex, cls)
            done = Future()
            timer = node.create_timer(0.01, lambda d=done, k=kind: d.done() or d.set_result(k))
            ex.add_node(node)
            ex.spin_until_future_complete(done, timeout_sec=5.0)
            assert done.result() == kind
            ex.remove_node(node)
            node.destroy_timer(timer)
            ex.shutdown()
        with pytest.raises(ValueError, match="single"):
            graph_executor(context, "events")
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
