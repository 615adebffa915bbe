"""A thread of its own that takes a model's inputs and runs the model in their callbacks.

A node that hands each input from its executor thread to a worker thread pays a thread hand-off
per input (a Condition notify, then the worker waiting for the GIL), and its executor rebuilds a
wait set over every entity of the node (lifecycle and parameter services, the action server,
timers) on each wake-up. :class:`InferenceThread` owns a hidden helper node instead, holding only
the input subscriptions, and spins it (:func:`input_executor`: rclpy's EventsExecutor where
it exists) in the thread that runs the model: a callback takes the input and runs the model
where it is. Inputs that arrive while the model runs wait in their subscription's queue (depth 1
with SensorDataQoS: only the newest). perception_node takes its camera and joint inputs on one
too, so in a one-process graph no frame passes the graph executor's wait set.
``benchmarks/bench_ros_latency.py`` measures what this saves, stage by stage (docs/benchmarks.md).

The helper node is named ``_<owner>_inputs`` (a leading underscore hides it from
``ros2 node list``), in the owner's namespace and context, without parameter services or rosout.
It ignores the process's arguments: ``ros2 launch`` passes ``-r __node:=<name>``, which would
give it the owner's name too. Subscribe it to :meth:`InferenceThread.topic` names instead: the
owner's names after its remappings, so ``-r observation:=/x`` (for the process or for the owner
node) moves the helper's subscription as it would the owner's. Its callbacks should use the
owner's clock and logger (sim time, log names).
"""

from __future__ import annotations

import os
import threading

import rclpy
from rclpy.context import Context
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    ShutdownException,
    SingleThreadedExecutor,
)
from rclpy.node import Node

SPIN_TIMEOUT_S = 0.1
"""Longest wait of one spin: how soon the thread notices a stop request without a wake-up."""


EVENTS_EXECUTOR_ENV = "ATE_ROS_EVENTS_EXECUTOR"
"""Set to 1 to spin input threads on rclpy's experimental EventsExecutor (opt-in: with it on,
a long test process that builds many graphs lost DDS discovery and shutdown timeouts)."""


def input_executor(context: Context) -> Executor:
    """A SingleThreadedExecutor; rclpy's EventsExecutor where this rclpy has it (Kilted) and
    :data:`EVENTS_EXECUTOR_ENV` is set.

    The EventsExecutor hands each message to its callback from an event queue in C++, where
    rclpy's Python executors rebuild a wait set on every wake-up. It is only spun with
    ``spin_once`` here: while its ``spin_until_future_complete`` runs, a thread creating an
    entity on its node (a lifecycle transition) or waking it never returns. The helper node's
    subscriptions are created before :meth:`InferenceThread.start` and destroyed after
    :meth:`InferenceThread.stop`, so nothing else touches it while it spins.
    """
    if os.environ.get(EVENTS_EXECUTOR_ENV, "") not in ("1", "true"):
        return SingleThreadedExecutor(context=context)
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


class InferenceThread:
    """A hidden helper node for input subscriptions, spun by one thread of its own.

    Args:
        owner: The node the inputs belong to (name, namespace and context are taken from it).
        thread_name: Name of the thread (shown by debuggers and ``threading.enumerate``).

    Create subscriptions on :attr:`node`; :meth:`start` starts taking them, :meth:`stop` returns
    once the callback in progress has finished, :meth:`destroy` removes the helper node.
    """

    def __init__(self, owner: Node, thread_name: str = "policy_inference") -> None:
        self.owner = owner
        self.thread_name = thread_name
        self.node = rclpy.create_node(
            f"_{owner.get_name()}_inputs", namespace=owner.get_namespace(),
            context=owner.context, use_global_arguments=False, start_parameter_services=False,
            enable_rosout=False)
        self._executor = input_executor(owner.context)
        self._executor.add_node(self.node)
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.callback_errors = 0

    def topic(self, name: str) -> str:
        """``name`` as the owner resolves it (namespace, ``~``, remappings): absolute."""
        return self.owner.resolve_topic_name(name)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """Start taking inputs (again, after :meth:`stop`)."""
        if self.running:
            return
        self._stop.clear()
        self.thread = threading.Thread(target=self._spin, name=self.thread_name, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking inputs; returns once the callback in progress (an inference) is done."""
        self._stop.set()
        self._executor.wake()
        thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def destroy(self) -> None:
        """Stop, then destroy the executor and the helper node with its subscriptions."""
        self.stop()
        self._executor.shutdown()
        self.node.destroy_node()

    def _spin(self) -> None:
        context = self.owner.context
        while not self._stop.is_set():
            if not context.ok():
                return  # Ctrl-C: the EventsExecutor's spin_once then returns at once
            try:
                self._executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
            except (ExternalShutdownException, ShutdownException):
                return  # Ctrl-C, or the executor was shut down
            except Exception as exc:  # noqa: BLE001 - one bad input must not stop inference
                if not context.ok():
                    return  # a callback raced with Ctrl-C shutting the context down
                # The callbacks count their own errors: this is a last resort.
                self.callback_errors += 1
                self.owner.get_logger().error(f"input callback failed: {exc}",
                                              throttle_duration_sec=5.0)
