"""executor_node: run action chunks safely on one embodiment through its trajectory controller.

Inputs
    ``joint_states`` (sensor_msgs/JointState, sensor QoS): measured positions (mapped by name).
    ``action_chunk`` (ate_ros/ActionChunk, reliable): chunks from the policy node.
    ``execute_chunk`` (ate_ros/ExecuteChunk action): one supervised chunk with feedback
    (index, tracking error); cancel holds position.
Outputs
    ``<controller>/joint_trajectory`` (trajectory_msgs/JointTrajectory): every control tick, the
    committed point plus the planned future points (``header.stamp`` = now, node clock), as the
    ros2_control joint_trajectory_controller topic interface expects; or, with ``output:
    action`` (or ``auto`` when control_msgs is importable), a FollowJointTrajectory goal on
    ``<controller>/follow_joint_trajectory`` per accepted chunk, when a hold starts (braking) and
    when the executor comes to rest; each goal holds every command until rest, since the
    controller gets nothing else until the next goal. Rejected and aborted goals are counted
    (``fjt_goals_*`` in /diagnostics, ``fjt_last_error``) and the executor restarts from the
    measured state.
    ``~/dry_run_trajectory``: the same trajectories when ``dry_run`` is true (nothing else sent).
    ``/diagnostics``: rates, ages, counters (accepted/rejected/clipped/dropped/watchdog holds).

Safety and scheduling live in the ROS-free :class:`ate_ros.core.execution.ChunkScheduler`; this
node feeds it node-clock time (``use_sim_time`` works) and the latest measured state.

Executors: no callback waits for another one, so the node spins on a SingleThreadedExecutor in
its own process (``main``). An ExecuteChunk goal is a coroutine that awaits its end: the control
tick publishes its feedback and ends it when its last point is due (node clock); a 20 ms
steady-clock goal timer (a cancel is noticed while a simulated clock is paused), and the control
tick itself, end it on cancel (holding first); a chunk on the topic, a newer goal, a failed
FollowJointTrajectory goal (its goal and result futures complete through done callbacks, never
waited on) and shutdown end it too. On a MultiThreadedExecutor (``ate-ros run``, tests) the
inputs, the action server and the FollowJointTrajectory client share a reentrant group (their
state is shared under one lock); the control tick and the goal timer each have a mutually
exclusive group of their own, so a late tick never runs beside the next one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import math
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.task import Future
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from ate_ros.action import ExecuteChunk
from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.execution import ChunkScheduler, ExecutionStats, ExecutorNodeConfig
from ate_ros.msg import ActionChunk
from ate_ros.ros.conversions import (
    ConversionError,
    is_stop_request,
    joint_state_to_embodiment,
    msg_to_chunk,
    sec_to_time,
    times_to_trajectory,
)
from ate_ros.ros.diagnostics import DiagnosticStatus, NodeDiagnostics
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, STATE_QOS
from ate_ros.ros.spin import publish_unless_shutdown, spin_node, unless_shutdown

__all__ = ["ExecutorNode", "main"]

CHUNK_TOPIC = "action_chunk"
JOINT_STATES_TOPIC = "joint_states"
EXECUTE_ACTION = "execute_chunk"
DRY_RUN_TOPIC = "~/dry_run_trajectory"
FJT_MAX_SECONDS = 60.0
"""Longest FollowJointTrajectory goal: the simulated commands stop there even if not at rest."""
GOAL_POLL_PERIOD = 0.02
"""Steady-clock seconds between checks of the running ExecuteChunk goal (cancel, shutdown)."""


def control_msgs_available() -> bool:
    return importlib.util.find_spec("control_msgs") is not None


@dataclass
class _Goal:
    """Book-keeping of the running ExecuteChunk goal; ``done`` resolves when it has to end."""

    handle: Any
    obs_stamp: float
    length: int
    end_time: float
    clipped: int
    done: Future = field(default_factory=Future)
    outcome: int = ExecuteChunk.Result.SUCCEEDED
    message: str = ""
    executed: int = 0
    max_error: float = 0.0


class ExecutorNode(Node):
    """The executor. Tests build it directly: ``ExecutorNode(ExecutorNodeConfig(...))``.

    Args:
        config: Parameter defaults (YAML / overrides still win); ``None`` uses the dataclass's.
        embodiment: Use this embodiment instead of loading ``config.embodiment``.
        node_name: Node name (``executor_node`` matches config/executor.yaml).
        **kwargs: Passed to :class:`rclpy.node.Node` (``parameter_overrides``, ``namespace``,
            ``context``...).
    """

    def __init__(self, config: ExecutorNodeConfig | None = None, *,
                 embodiment: Embodiment | None = None, node_name: str = "executor_node",
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._cb = ReentrantCallbackGroup()
        self._lock = threading.RLock()
        self.params = DataclassParameters(self, ExecutorNodeConfig, defaults=config,
                                          on_change=self._on_params)
        cfg = self.params.config
        self.config = cfg
        self.embodiment = embodiment if embodiment is not None else load_embodiment(
            cfg.embodiment)
        self.scheduler = ChunkScheduler(self.embodiment, cfg.execution)
        self.dt = self.embodiment.control_period
        self._measured: np.ndarray | None = None
        self._measured_at = -math.inf
        self._goal: _Goal | None = None
        self._last_hold_sent: np.ndarray | None = None
        self._send_action_goal = False
        self._plan_dropped = True  # the scheduler has no plan (FollowJointTrajectory braking)
        self._fjt_seq = 0  # number of the latest FollowJointTrajectory goal sent
        self._shutting_down = False

        self.diag = NodeDiagnostics(self, "executor", cfg.diagnostics_period,
                                    hardware_id=self.embodiment.name, callback_group=self._cb)
        self.diag.add_provider(lambda: self.scheduler.stats.as_dict())
        self.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state,
                                 STATE_QOS, callback_group=self._cb)
        self.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, COMMAND_QOS,
                                 callback_group=self._cb)
        self._dry_pub = self.create_publisher(JointTrajectory, DRY_RUN_TOPIC, COMMAND_QOS)
        self._traj_pub = None
        self._fjt_client = None
        use_action = cfg.output == "action" or (cfg.output == "auto" and control_msgs_available())
        if use_action:
            if not control_msgs_available():
                raise RuntimeError("output: action needs control_msgs (FollowJointTrajectory); "
                                   "install ros-<distro>-control-msgs or use output: topic")
            from control_msgs.action import FollowJointTrajectory
            from rclpy.action import ActionClient

            self._fjt_type = FollowJointTrajectory
            self._fjt_client = ActionClient(self, FollowJointTrajectory,
                                            f"{cfg.controller}/follow_joint_trajectory",
                                            callback_group=self._cb)
        else:
            self._traj_pub = self.create_publisher(
                JointTrajectory, f"{cfg.controller}/joint_trajectory", COMMAND_QOS)
        self._action_server = ActionServer(
            self, ExecuteChunk, EXECUTE_ACTION, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=self._cb)
        # A group of its own: in a reentrant group a late tick would overlap the next one.
        self._timer = self.create_timer(self.dt, self._tick,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        # Wall (steady) time: a goal notices a cancel even while a simulated clock is paused.
        self._goal_timer = self.create_timer(
            GOAL_POLL_PERIOD, self._poll_goal, callback_group=MutuallyExclusiveCallbackGroup(),
            clock=Clock(clock_type=ClockType.STEADY_TIME), autostart=False)
        self.get_logger().info(
            f"executing for {self.embodiment.name} ({self.embodiment.dof} joints) at "
            f"{1 / self.dt:.1f} Hz -> {cfg.controller} via "
            f"{'FollowJointTrajectory' if use_action else 'joint_trajectory topic'}"
            f"{' (DRY RUN)' if cfg.dry_run else ''}")

    # ----- helpers ----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_params(self, cfg: ExecutorNodeConfig) -> None:
        with self._lock:
            self.config = cfg
            self.scheduler.set_config(cfg.execution)
        self.get_logger().info(f"parameters updated (dry_run={cfg.dry_run}, "
                               f"blend={cfg.execution.blend})")

    def _stopped(self) -> bool:
        """Destroyed, or Ctrl-C shut the context down: take nothing in, command nothing more."""
        return self._shutting_down or not rclpy.ok(context=self.context)

    def _state_fresh(self, now: float) -> bool:
        return (self._measured is not None
                and now - self._measured_at <= self.config.state_timeout)

    # ----- inputs -----------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q = joint_state_to_embodiment(msg, self.embodiment)
        except ConversionError as exc:
            self.diag.count("bad_joint_states")
            self.get_logger().warn(f"ignoring joint_states: {exc}",
                                   throttle_duration_sec=5.0)
            return
        now = self._now()
        with self._lock:
            self._measured = q
            self._measured_at = now
        self.diag.rate("joint_states", now)

    def _submit(self, chunk: np.ndarray, obs_stamp: float) -> tuple[bool, str, int]:
        """Submit under the lock; returns (accepted, reason, clipped)."""
        now = self._now()
        with self._lock:
            if not self._state_fresh(now):
                self.scheduler.stats.rejected["bad_state"] += 1
                return False, "bad_state: no recent joint_states", 0
            r = self.scheduler.submit(chunk, obs_stamp, now, self._measured)
            if r.accepted:
                self._send_action_goal = True
        self.diag.set("chunk_age_s", now - obs_stamp)
        return r.accepted, r.reason, r.clipped

    def _on_chunk(self, msg: ActionChunk) -> None:
        if self._stopped():
            return
        now = self._now()
        self.diag.rate("action_chunk", now)
        self.diag.set("inference_latency_s", float(msg.inference_latency))
        if is_stop_request(msg, self.embodiment):
            self._stop_request(msg.model_id)
            return
        try:
            chunk, obs = msg_to_chunk(msg, self.embodiment)
        except ConversionError as exc:
            self.scheduler.stats.rejected["shape"] += 1
            self.get_logger().warn(f"rejected chunk: {exc}", throttle_duration_sec=2.0)
            return
        accepted, reason, _ = self._submit(chunk, obs)
        if not accepted:
            self.get_logger().warn(f"rejected chunk: {reason}", throttle_duration_sec=2.0)
            return
        with self._lock:
            goal = self._goal
        if goal is not None:  # a topic chunk takes over from the supervised one
            self._finish_goal(goal, ExecuteChunk.Result.PREEMPTED, "preempted by action_chunk")

    def _stop_request(self, source: str) -> None:
        """An empty chunk (see ActionChunk.msg): drop the plan and hold where the robot is now,
        not at a point the producer saw a while ago (which the arm would first return to)."""
        with self._lock:
            self.scheduler.hold()
            self.scheduler.stats.stop_requests += 1
            goal = self._goal
        self.get_logger().info(f"stop requested ({source or 'empty action_chunk'}): holding")
        if goal is not None:
            self._finish_goal(goal, ExecuteChunk.Result.PREEMPTED, "stopped by action_chunk")

    # ----- control tick -----------------------------------------------------------------------
    def _tick(self) -> None:
        if self._stopped():
            return
        with self._lock:
            goal = self._goal
        if goal is not None:
            self._check_cancel(goal)  # before this tick's command: a canceled goal holds now
        with self._lock:
            # Read under the lock: a command for an older time than the last one would make
            # the scheduler reset (it takes that for the clock jumping back).
            now = self._now()
            if self._measured is None:
                return  # nothing known about the robot yet: send nothing
            if not self._state_fresh(now) and not self.scheduler.holding:
                self.get_logger().warn("joint_states stale: holding position",
                                       throttle_duration_sec=2.0)
                self.scheduler.hold()
            goal = self._goal
            if goal is not None:
                self.scheduler.touch(now)
            q = self.scheduler.command(now, self._measured)
            times, pos = self.scheduler.planned(now, max_points=self.config.stream_horizon)
            holding = self.scheduler.holding
            moving = self.scheduler.moving
            send_goal = self._send_action_goal
            self._send_action_goal = False
            # The plan was just dropped (watchdog, stale joint_states, ExecuteChunk cancel): a
            # controller running a FollowJointTrajectory goal must get the braking trajectory
            # now, not when the executor has come to rest.
            dropped = not math.isfinite(self.scheduler.plan_end)
            brake = dropped and not self._plan_dropped
            self._plan_dropped = dropped
            tracking = self.scheduler.tracking_error
            dry = self.config.dry_run
            fjt = (not dry and self._fjt_client is not None
                   and (send_goal or brake or (holding and not moving)))
            if fjt:  # a goal is not streamed again: it must hold every command until rest
                # Under the same lock as the command: a chunk merged in between would be in the
                # goal but not in the plan the scheduler takes for the one it sent.
                times, pos = self._plan_to_rest(now, q)
        self.diag.set("tracking_error", tracking)
        self.diag.status(DiagnosticStatus.WARN if self.scheduler.watchdog_expired
                         else DiagnosticStatus.OK,
                         "watchdog expired: holding" if self.scheduler.watchdog_expired
                         else ("holding" if holding else "executing"))
        if goal is not None:
            self._update_goal(goal, now, q, tracking)
        # Streaming: skip repeated identical hold messages once the robot is at rest.
        if holding and not moving:
            if self._last_hold_sent is not None and np.array_equal(self._last_hold_sent, q):
                return
            self._last_hold_sent = q.copy()
        else:
            self._last_hold_sent = None
        if not (dry or self._traj_pub is not None or fjt):
            return  # FollowJointTrajectory output: the running goal already holds this tick
        traj = times_to_trajectory(times - now, pos, self.embodiment.joint_names,
                                   stamp=sec_to_time(now))
        if dry:
            publish_unless_shutdown(self, self._dry_pub, traj)
        elif self._traj_pub is not None:
            publish_unless_shutdown(self, self._traj_pub, traj)
        elif fjt:
            self._send_fjt(traj, motion=not (holding and not moving))
        self.diag.count("trajectories_sent")

    # ----- FollowJointTrajectory output -------------------------------------------------------
    def _plan_to_rest(self, now: float, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every command from the one just given (``q``, due at ``now + dt``) until rest.

        Runs a copy of the scheduler over future ticks, as if no new chunk arrived, so the goal
        holds exactly what this node would stream (limits included) and ends at rest. The
        watchdog is left out of the copy: when it fires, :meth:`_tick` sends the braking goal.
        Call with ``self._lock`` held.
        """
        sim = copy.copy(self.scheduler)  # its methods replace arrays, never modify them
        sim.stats = ExecutionStats()
        sim.config = dataclasses.replace(sim.config, watchdog_timeout=math.inf)
        t = now
        times, pos = [now + self.dt], [q]
        for _ in range(int(FJT_MAX_SECONDS / self.dt)):
            if sim.holding and not sim.moving:
                break
            t += self.dt
            pos.append(sim.command(t, pos[-1]))
            times.append(t + self.dt)
        return np.asarray(times), np.asarray(pos)

    def _send_fjt(self, traj: JointTrajectory, motion: bool) -> None:
        client = self._fjt_client  # None once the node is destroyed
        if client is None:
            return
        if not client.server_is_ready():
            self.get_logger().warn("FollowJointTrajectory server not available",
                                   throttle_duration_sec=5.0)
            return
        goal = self._fjt_type.Goal()
        goal.trajectory = traj
        with self._lock:
            self._fjt_seq += 1
            seq = self._fjt_seq
        self.diag.count("fjt_goals_sent")
        with unless_shutdown(self.context):
            future = client.send_goal_async(goal)
            future.add_done_callback(lambda f: self._on_fjt_response(f, seq, motion))

    def _on_fjt_response(self, future: Any, seq: int, motion: bool) -> None:
        try:
            handle = future.result()
        except Exception as exc:  # the request failed: same as a rejection
            self._on_fjt_failed(seq, motion, "rejected", f"goal request failed: {exc}")
            return
        if handle is None or not handle.accepted:
            self._on_fjt_failed(seq, motion, "rejected", "rejected by the controller")
            return
        handle.get_result_async().add_done_callback(
            lambda f: self._on_fjt_result(f, seq, motion))

    def _on_fjt_result(self, future: Any, seq: int, motion: bool) -> None:
        try:
            response = future.result()
            status, result = response.status, response.result
        except Exception as exc:  # the result never came (shutdown, server gone)
            self._on_fjt_failed(seq, motion, "aborted", f"no result: {exc}")
            return
        if status == GoalStatus.STATUS_SUCCEEDED:
            self.diag.count("fjt_goals_succeeded")
            return
        with self._lock:
            superseded = seq != self._fjt_seq
        if superseded:  # the controller ends the active goal when our next one arrives
            self.diag.count("fjt_goals_preempted")
            return
        kind = "canceled" if status == GoalStatus.STATUS_CANCELED else "aborted"
        self._on_fjt_failed(seq, motion, kind, f"{kind} (status {status}), error_code "
                            f"{result.error_code}: {result.error_string}")

    def _on_fjt_failed(self, seq: int, motion: bool, kind: str, detail: str) -> None:
        """Count and report a failed goal; after the latest motion goal, restart from the robot.

        The controller does not run our plan (after an abort it holds, after a rejection it
        keeps its previous goal), so the plan is dropped and the next command starts from the
        measured state: no later goal may start where the robot never got to.
        """
        self.diag.count(f"fjt_goals_{kind}")
        self.diag.set("fjt_last_error", f"goal {seq}: {detail}")
        self.get_logger().warn(f"FollowJointTrajectory goal {seq} {detail}",
                               throttle_duration_sec=2.0)
        with self._lock:
            if not motion or seq != self._fjt_seq or self._shutting_down:
                return
            self.scheduler.reset()
            self._last_hold_sent = None
            goal = self._goal
        if goal is not None:
            self._finish_goal(goal, ExecuteChunk.Result.ABORTED,
                              f"FollowJointTrajectory goal {detail}")

    # ----- ExecuteChunk action ----------------------------------------------------------------
    def _on_goal(self, goal_request: Any) -> GoalResponse:
        return GoalResponse.REJECT if self._shutting_down else GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _update_goal(self, goal: _Goal, now: float, q: np.ndarray, tracking: float) -> None:
        t_next = now + self.dt
        index = int(min(max(round((t_next - goal.obs_stamp) / self.dt) - 1, 0),
                        goal.length - 1))
        goal.executed += 1
        goal.max_error = max(goal.max_error, tracking)
        fb = ExecuteChunk.Feedback()
        fb.index = index
        fb.tracking_error = float(tracking)
        try:
            goal.handle.publish_feedback(fb)
        except Exception:  # goal already finished/destroyed
            pass
        if t_next >= goal.end_time - 1e-9:
            self._finish_goal(goal, ExecuteChunk.Result.SUCCEEDED, "executed")

    def _check_cancel(self, goal: _Goal) -> bool:
        """A cancel of ``goal`` was accepted: hold (unless something newer took over), end it.

        Read from the goal's state, which the action server sets to CANCELING only after the
        cancel callback accepted it, so the goal's coroutine can report CANCELED.
        """
        if not goal.handle.is_cancel_requested:
            return False
        with self._lock:
            if self._goal is goal:
                self.scheduler.hold()
        self._finish_goal(goal, ExecuteChunk.Result.CANCELED, "canceled: holding")
        return True

    def _poll_goal(self) -> None:
        """Goal timer (steady clock): end the running goal on cancel or shutdown."""
        with self._lock:
            goal = self._goal
        if goal is None or self._check_cancel(goal):
            return
        if self._stopped():
            self._finish_goal(goal, ExecuteChunk.Result.ABORTED, "executor shutting down")

    def _set_goal_timer(self, running: bool) -> None:
        """Start (reset) or stop the goal timer. Call with ``self._lock`` held."""
        with contextlib.suppress(InvalidHandle):  # destroyed with the node
            if running:
                self._goal_timer.reset()
            else:
                self._goal_timer.cancel()

    def _finish_goal(self, goal: _Goal, outcome: int, message: str) -> None:
        """Resolve ``goal.done`` (once; any thread): its coroutine then finishes the goal."""
        with self._lock:
            if goal.done.done():
                return
            goal.outcome, goal.message = outcome, message
            if self._goal is goal:
                self._goal = None
                self._set_goal_timer(False)
            goal.done.set_result(outcome)
        self._wake()  # resume the coroutine now (when resolved from another thread)

    def _wake(self) -> None:
        executor = self.executor
        if executor is not None:
            with contextlib.suppress(InvalidHandle):  # the executor is shutting down
                executor.wake()

    async def _execute(self, goal_handle: Any) -> Any:
        """A goal's coroutine: submits its chunk, awaits the goal's end, finishes it.

        It never blocks an executor thread (see the module docstring for what ends a goal).
        """
        msg = goal_handle.request.chunk
        result = ExecuteChunk.Result()
        try:
            chunk, obs = msg_to_chunk(msg, self.embodiment)
        except ConversionError as exc:
            self.scheduler.stats.rejected["shape"] += 1
            result.outcome, result.message = ExecuteChunk.Result.REJECTED, str(exc)
            goal_handle.abort()
            return result
        with self._lock:
            previous = self._goal
        if previous is not None:
            self._finish_goal(previous, ExecuteChunk.Result.PREEMPTED, "preempted by a new goal")
        accepted, reason, clipped = self._submit(chunk, obs)
        if not accepted:
            result.outcome, result.message = ExecuteChunk.Result.REJECTED, reason
            goal_handle.abort()
            return result
        goal = _Goal(handle=goal_handle, obs_stamp=obs, length=chunk.shape[0],
                     end_time=obs + chunk.shape[0] * self.dt, clipped=clipped)
        with self._lock:
            self._goal = goal
            self._set_goal_timer(True)
        self._wake()  # multi-threaded: the wait may have started without the goal timer
        await goal.done
        result.outcome = goal.outcome
        result.message = goal.message
        result.executed_points = goal.executed
        result.clipped_points = goal.clipped
        result.max_tracking_error = float(goal.max_error)
        with unless_shutdown(self.context):  # the goal status is published: not after Ctrl-C
            if goal.outcome == ExecuteChunk.Result.SUCCEEDED:
                goal_handle.succeed()
            elif goal.outcome == ExecuteChunk.Result.CANCELED and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        return result

    # ----- shutdown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop commanding (idempotent): hold, end the running ExecuteChunk goal.

        The control tick sends nothing after this; :func:`main` calls it as soon as spinning
        ends (Ctrl-C), before the executor and the node are destroyed.
        """
        self._shutting_down = True
        with self._lock:
            goal = self._goal
            self.scheduler.hold()
        if goal is not None:
            self._finish_goal(goal, ExecuteChunk.Result.ABORTED, "executor shutting down")

    def destroy_node(self) -> None:
        self.stop()
        # rclpy's destroy_node leaves waitables (action servers and clients) in the graph.
        self._action_server.destroy()
        if self._fjt_client is not None:
            self._fjt_client.destroy()
            self._fjt_client = None
        self.diag.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # Nothing blocks an executor thread (see the module docstring): one thread is enough.
    return spin_node(ExecutorNode, args, before_destroy=lambda n: n.stop(),
                     single_threaded=True)


if __name__ == "__main__":
    sys.exit(main())
