"""executor_node's FollowJointTrajectory output: a client that sends the executor core's goals
and reports each goal's end back to the core.

Nothing here waits: the goal and result futures complete through done callbacks (a node on a
SingleThreadedExecutor keeps spinning). What a goal's end means (preempted, failed, restart from
the robot) is the core's decision (:meth:`ate_ros.core.execution.ChunkExecutor.goal_result`,
:meth:`~ate_ros.core.execution.ChunkExecutor.goal_failed`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectory

from ate_ros.core.execution import ChunkExecutor, GoalEnd
from ate_ros.ros.spin import unless_shutdown

__all__ = ["TrajectoryGoals"]


class TrajectoryGoals:
    """FollowJointTrajectory goals on ``<controller>/follow_joint_trajectory``.

    Args:
        node: Owns the client (for the node's lifetime: it is a waitable).
        controller: Controller name.
        lock: The node's lock, held while the core is called.
        core: Returns the executor core (None while unconfigured: results are then dropped).
        on_ended: Called with the goals the core ended on a failure (lock released).
        callback_group: Of the client.
    """

    def __init__(self, node: Node, controller: str, lock: threading.RLock,
                 core: Callable[[], ChunkExecutor | None],
                 on_ended: Callable[[list[GoalEnd]], None], callback_group: Any = None) -> None:
        from control_msgs.action import FollowJointTrajectory  # only where control_msgs is

        self._node, self._lock, self._core, self._on_ended = node, lock, core, on_ended
        self._goal_type = FollowJointTrajectory.Goal
        self._client: ActionClient | None = ActionClient(
            node, FollowJointTrajectory, f"{controller}/follow_joint_trajectory",
            callback_group=callback_group)

    def server_is_ready(self) -> bool:
        return self._client is not None and self._client.server_is_ready()

    def send(self, traj: JointTrajectory, motion: bool) -> None:
        """Send ``traj`` as the next goal (``motion``: it moves, its failure restarts)."""
        client = self._client  # None once destroyed
        if client is None:
            return
        if not client.server_is_ready():
            warning, ended = self._tell_core(
                lambda core: core.goal_unsent(motion, "server not available"))
            if warning:
                self._node.get_logger().warning(warning, throttle_duration_sec=5.0)
            self._on_ended(ended)
            return
        goal = self._goal_type()
        goal.trajectory = traj
        with self._lock:
            core = self._core()
            if core is None:
                return
            seq = core.goal_sent()
        with unless_shutdown(self._node.context):
            future = client.send_goal_async(goal)
            future.add_done_callback(lambda f: self._on_response(f, seq, motion))

    def _on_response(self, future: Any, seq: int, motion: bool) -> None:
        try:
            handle = future.result()
        except Exception as exc:  # the request failed: same as a rejection
            self._report(seq, motion, None, "rejected", f"goal request failed: {exc}")
            return
        if handle is None or not handle.accepted:
            self._report(seq, motion, None, "rejected", "rejected by the controller")
            return
        handle.get_result_async().add_done_callback(lambda f: self._on_result(f, seq, motion))

    def _on_result(self, future: Any, seq: int, motion: bool) -> None:
        try:
            response = future.result()
            status, result = response.status, response.result
        except Exception as exc:  # the result never came (shutdown, server gone)
            self._report(seq, motion, None, "aborted", f"no result: {exc}")
            return
        kind = "canceled" if status == GoalStatus.STATUS_CANCELED else "aborted"
        self._report(seq, motion, status == GoalStatus.STATUS_SUCCEEDED, kind,
                     f"{kind} (status {status}), error_code {result.error_code}: "
                     f"{result.error_string}", result.error_code)

    def _report(self, seq: int, motion: bool, succeeded: bool | None, kind: str,
                detail: str, error_code: int | None = None) -> None:
        """A result (``succeeded`` True/False) or a failure without one (None) to the core."""
        warning, ended = self._tell_core(
            lambda core: core.goal_failed(seq, motion, kind, detail) if succeeded is None
            else core.goal_result(seq, motion, succeeded, kind, detail, error_code))
        if warning:  # each log call site throttles on its own (rclpy)
            self._node.get_logger().warning(warning, throttle_duration_sec=2.0)
        self._on_ended(ended)

    def _tell_core(self, call: Callable[[ChunkExecutor], str]) -> tuple[str, list[GoalEnd]]:
        """``call(core)`` under the node's lock: its warning and the goals the core ended
        ("" and none while unconfigured)."""
        with self._lock:
            core = self._core()
            if core is None:
                return "", []
            return call(core), core.take_ended()

    def destroy(self) -> None:
        """Remove the client from the graph (rclpy's destroy_node leaves waitables)."""
        client, self._client = self._client, None
        if client is not None:
            client.destroy()
