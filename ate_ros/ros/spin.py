"""The body of every node's ``main()``: init, build, spin, shut down cleanly.

Ctrl-C: rclpy's SIGINT handler shuts the context down from a thread of its own, so node threads
and executor callbacks that are mid-flight at that moment find an invalid context: publishing
then raises ``RCLError`` ("publisher's context is invalid"). Nodes publish from threads and
timers through :func:`publish_unless_shutdown` / :func:`unless_shutdown`, which drop exactly
that error once the context is shut down (and re-raise it otherwise). :func:`spin_node` stops
the node's own threads first, then the executor, then destroys the node.

rclpy's handler then calls Python's, which raises ``KeyboardInterrupt`` wherever the main thread
happens to be: inside a callback, or inside rclpy itself (a ``Task`` whose ``__init__`` was cut
short prints "Exception ignored in: Future.__del__ ... no attribute '_exception'" when it is
collected). :func:`spin_node` installs :func:`quiet_first_sigint` instead, so the first Ctrl-C
only ends spinning; a second one still raises, should shutting down hang.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from ate_ros.ros.interrupts import quiet_first_sigint

GIL_SWITCH_INTERVAL_S = 5e-4
"""Shorter than Python's default (5 ms): inference is hundreds of small torch ops, each
re-taking the GIL from DDS callback and simulation threads, and long slices make that convoy
slow a chunk down in the one-process graph (docs/design_notes.md, "A short GIL switch
interval")."""

SHUTDOWN_ERRORS: tuple[type[BaseException], ...] = (_rclpy.RCLError, InvalidHandle)
"""What rcl raises for a publish (or any call) on an entity whose context was shut down."""


def prefer_short_gil_slices() -> None:
    """Shorten the interpreter's thread switch interval (process-wide) for multi-threaded nodes."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


class DrainingMultiThreadedExecutor(MultiThreadedExecutor):
    """rclpy's, with a shutdown that lets its thread pool finish before the executor's guard
    condition is destroyed.

    rclpy destroys that guard condition first (docs/design_notes.md, "Clean Ctrl-C"); a handler
    still queued in the pool then fails with ``InvalidHandle`` inside a task nobody awaits,
    printed when the process exits: "The following exception was never retrieved: cannot use
    Destroyable because destruction was requested".

    Stop spinning before calling :meth:`shutdown` (end ``spin()``, or let
    ``spin_until_future_complete`` return and join its thread): a thread still spinning could
    hand a new callback to the drained pool ("cannot schedule new futures after shutdown").
    The executor is marked shut down first, which ends such a loop at its next wait, but that
    leaves a window.
    """

    def shutdown(self, timeout_sec: float | None = None, *,
                 wait_for_threads: bool = True) -> bool:
        with self._shutdown_lock:  # as rclpy does first: spinning loops stop taking work
            if not self._is_shutdown:
                self._is_shutdown = True
                if self._guard:
                    self._guard.trigger()
        pool = getattr(self, "_executor", None)  # the ThreadPoolExecutor of the handlers
        if wait_for_threads and pool is not None:
            pool.shutdown(wait=True)
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)


GRAPH_EXECUTORS = ("single", "multi")
"""Executors :func:`graph_executor` builds: ``single`` (the default) and ``multi`` (the one
``ate-ros run`` used before, kept to compare; ``bench_ros_latency.py --executor``)."""


def graph_executor(context: Context, kind: str = GRAPH_EXECUTORS[0]) -> Executor:
    """The executor that spins a whole graph in one process (``ate-ros run``).

    ``single``: a SingleThreadedExecutor. No node callback waits for another one (goals are
    coroutines, inference and simulation run in threads of their own), so one thread loses
    nothing, and it spares what a MultiThreadedExecutor pays per message: a hand-off to its pool
    and a wait set rebuilt over every node's entities by several threads in turn, which on two
    cores took more CPU than all the callbacks together (docs/design_notes.md).
    ``multi``: :class:`DrainingMultiThreadedExecutor` with 4 threads.
    """
    if kind == "single":
        return SingleThreadedExecutor(context=context)
    if kind == "multi":
        return DrainingMultiThreadedExecutor(num_threads=4, context=context)
    raise ValueError(f"unknown graph executor {kind!r}; choose from {list(GRAPH_EXECUTORS)}")


def close_unstarted_callbacks(executor: Any) -> int:
    """Close the coroutines of callbacks ``executor`` took from the wait set but never ran.

    rclpy makes a callback's coroutine when it takes the entity and runs it in the next
    statement; a Ctrl-C that lands between the two leaves it in the executor's task list, and
    Python prints "coroutine ... was never awaited" when it is collected at exit. Coroutines that
    did start (an action goal awaiting its end) are left alone: collecting them closes them
    quietly. Uses rclpy internals (``_tasks``, ``Task._handler``) where they exist, so on another
    rclpy it does nothing. Returns how many were closed.
    """
    lock = getattr(executor, "_tasks_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        tasks = list(getattr(executor, "_tasks", ()))
    closed = 0
    for entry in tasks:
        handler = getattr(entry[0] if isinstance(entry, tuple) else entry, "_handler", None)
        if (inspect.iscoroutine(handler)
                and inspect.getcoroutinestate(handler) == inspect.CORO_CREATED):
            handler.close()
            closed += 1
    return closed


def _shut_down(context: Context, grace: float = 0.5) -> bool:
    """Whether ``context`` is shut down now or within ``grace`` seconds."""
    end = time.monotonic() + grace
    while context.ok():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def unless_shutdown(context: Context) -> Iterator[None]:
    """Swallow rcl's error for a call that raced with the shutdown of ``context``.

    Only when the context is shut down: the same error while it is up is a real one and is
    raised. Use around publishes (and goal updates) from node threads and timers.
    """
    try:
        yield
    except SHUTDOWN_ERRORS:
        if context.ok():
            raise


def publish_unless_shutdown(node: Node, publisher: Any, msg: Any) -> bool:
    """``publisher.publish(msg)`` unless ``node``'s context is shut down (then nothing is sent).

    Returns whether the message was published.
    """
    context = node.context
    if not context.ok():
        return False
    try:
        publisher.publish(msg)
    except SHUTDOWN_ERRORS:
        if context.ok():
            raise
        return False
    return True


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None,
              before_destroy: Callable[[Node], None] | None = None,
              single_threaded: bool = False) -> int:
    """Run one node until Ctrl-C or an external shutdown; returns the exit code (0).

    A MultiThreadedExecutor by default: reentrant groups (blocking action servers) only run
    concurrently on it. ``single_threaded`` is for nodes whose callbacks never block one
    another: rclpy's SingleThreadedExecutor dispatches a callback with less Python overhead.
    ``before_destroy`` stops node-owned threads (inference, simulation): it runs first once
    spinning ends, before the executor is shut down and the node's entities are destroyed.
    """
    prefer_short_gil_slices()
    with quiet_first_sigint():
        rclpy.init(args=args)
        context = rclpy.get_default_context()
        node = None
        executor = (SingleThreadedExecutor() if single_threaded
                    else DrainingMultiThreadedExecutor())
        try:
            try:
                node = make_node()
            except Exception:
                # Ctrl-C while the node was being built: the context went down under its
                # constructor, whose next rcl call failed (RCLError; ValueError from an action
                # server). Nothing runs yet, so there is nothing to report. A real error (the
                # context still up) goes on.
                if context.ok():
                    raise
                return 0
            executor.add_node(node)
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except RuntimeError:
            # rcl's errors (RCLError, InvalidHandle) and pybind11's conversion errors are
            # RuntimeErrors: a callback on the spinning thread was cut short by Ctrl-C shutting
            # the context down. A real error, with the context up, goes on.
            if not _shut_down(context):
                raise
        finally:
            if node is not None and before_destroy is not None:
                before_destroy(node)
            executor.shutdown()
            close_unstarted_callbacks(executor)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
    return 0
