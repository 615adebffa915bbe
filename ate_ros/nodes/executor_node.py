"""executor_node (lifecycle): run action chunks safely on one embodiment through its controller.

Lifecycle:
    configure  loads the embodiment and builds the executor core; creates the joint_states and
               action_chunk subscriptions and the trajectory publishers.
    activate   starts the control tick (the command starts from the measured state).
    deactivate brakes: the trajectory to rest goes out once (the controller would otherwise run
               on along the last one), then the tick stops; the running goal aborts.
    cleanup    destroys the subscriptions and publishers.
The ExecuteChunk server and the FollowJointTrajectory client live as long as the node and take
no goals unless it is active (rclpy stops spinning when a waitable is destroyed while another
executor thread builds its wait set; see policy_node).

Inputs
    ``joint_states`` (sensor_msgs/JointState, sensor QoS): measured positions (mapped by name);
    with a ``header.stamp`` (as joint_state_broadcaster sends), the executor checks that the
    robot follows its commands (``max_tracking_error``) and otherwise holds where it is.
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
    controller gets nothing else until the next goal. Rejected and aborted goals, and goals
    that could not be sent (no action server), are counted (``fjt_goals_*`` in /diagnostics,
    ``fjt_last_error``) and the executor restarts from the measured state.
    ``~/dry_run_trajectory``: the same trajectories when ``dry_run`` is true (nothing else sent).
    ``/diagnostics``: rates, ages, counters (accepted/rejected/clipped/dropped/watchdog holds).

Every decision (safety, scheduling, holding, braking, when to send a goal, goal outcomes) is the
ROS-free :class:`ate_ros.core.execution.ChunkExecutor`'s; this node feeds it node-clock time and
the measured state, and sends what it decides.

Executors: no callback waits for another one, so the node spins on a SingleThreadedExecutor in
its own process (``main``). An ExecuteChunk goal is a coroutine that awaits its end
(:class:`ate_ros.ros.goal_runner.GoalRunner`): the control tick ends it when its last point is
due, a steady-clock poll and the control tick end it on cancel (holding first); a chunk on the
topic, a newer goal, a failed FollowJointTrajectory goal (its futures complete through done
callbacks, never waited on), deactivation and shutdown end it too. On a MultiThreadedExecutor
(``ate-ros run``, tests) the inputs, the action server and the FollowJointTrajectory client share
a reentrant group (their state is shared under one lock); the control tick has a mutually
exclusive group of its own, so a late tick never runs beside the next one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from ate_ros.action import ExecuteChunk
from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.execution import (
    ChunkExecutor,
    ExecutorNodeConfig,
    GoalEnd,
    GoalOutcome,
    Output,
    TickDecision,
)
from ate_ros.msg import ActionChunk
from ate_ros.ros.conversions import (
    ConversionError,
    chunk_takeover,
    is_stop_request,
    joint_state_to_embodiment,
    msg_to_chunk,
    sec_to_time,
    time_to_sec,
    times_to_trajectory,
)
from ate_ros.ros.diagnostics import DiagnosticStatus, NodeDiagnostics
from ate_ros.ros.goal_runner import GoalRun, GoalRunner, result_code, settle
from ate_ros.ros.lifecycle import ReleasingLifecycleNode
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, STATE_QOS
from ate_ros.ros.spin import publish_unless_shutdown, spin_node
from ate_ros.ros.trajectory_goals import TrajectoryGoals

__all__ = ["ExecutorNode", "control_msgs_available", "main"]

CHUNK_TOPIC = "action_chunk"
JOINT_STATES_TOPIC = "joint_states"
EXECUTE_ACTION = "execute_chunk"
DRY_RUN_TOPIC = "~/dry_run_trajectory"


def control_msgs_available() -> bool:
    return importlib.util.find_spec("control_msgs") is not None


class ExecutorNode(ReleasingLifecycleNode):
    """The executor. Tests build it directly: ``ExecutorNode(ExecutorNodeConfig(...))``.

    Args:
        config: Parameter defaults (YAML / overrides still win); ``None`` uses the dataclass's.
        embodiment: Use this embodiment instead of loading ``config.embodiment``.
        node_name: Node name (``executor_node`` matches config/executor.yaml).
        **kwargs: Passed to :class:`rclpy.lifecycle.LifecycleNode` (``parameter_overrides``,
            ``namespace``, ``context``...).
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
        self._given_embodiment = embodiment
        self.embodiment: Embodiment | None = embodiment
        self.core: ChunkExecutor | None = None
        self._subs: list[Any] = []
        self._traj_pub = self._dry_pub = None
        self._timer = None
        self._active = False
        self._shutting_down = False
        self.use_action = cfg.output == "action" or (cfg.output == "auto"
                                                      and control_msgs_available())
        self._fjt_client: TrajectoryGoals | None = None
        if self.use_action and control_msgs_available():
            self._fjt_client = TrajectoryGoals(self, cfg.controller, self._lock,
                                               lambda: self.core, self._resolve, self._cb)
        self.diag = NodeDiagnostics(self, "executor", cfg.diagnostics_period,
                                    hardware_id=embodiment.name if embodiment else "",
                                    callback_group=self._cb)
        self.diag.add_provider(lambda: self.core.diagnostics() if self.core else {})
        self._goals = GoalRunner(self, self._poll_goal, self._lock)
        self._action_server = ActionServer(
            self, ExecuteChunk, EXECUTE_ACTION, execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=self._cb)

    @property
    def config(self) -> ExecutorNodeConfig:
        return self.params.config

    @property
    def scheduler(self) -> Any:
        """The core's :class:`~ate_ros.core.execution.ChunkScheduler` (None unconfigured)."""
        return None if self.core is None else self.core.scheduler

    # ----- in-process lock-step (ate_ros.core.sim.stepping.InProcessExecutor) -----------------
    def needs_chunk(self, now: float) -> bool:
        """Whether the scheduler runs low at ``now`` (False while unconfigured)."""
        with self._lock:
            sched = self.scheduler
            return sched is not None and sched.needs_chunk(now)

    def chunks_handled(self) -> int:
        """Chunks the scheduler accepted or rejected so far (0 while unconfigured)."""
        sched = self.scheduler  # counters only: read without the lock (polled)
        return 0 if sched is None else sched.stats.accepted + sched.stats.rejected_total

    def command_state(self) -> tuple[int, bool]:
        """Commands sent so far, and whether the executor holds at rest (sends nothing new)."""
        with self._lock:
            sched = self.scheduler
            if sched is None:
                return 0, True
            return sched.stats.commands, sched.holding and not sched.moving

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_params(self, cfg: ExecutorNodeConfig) -> None:
        with self._lock:
            if self.core is not None:
                self.core.set_config(cfg)
        self.get_logger().info(f"parameters updated (dry_run={cfg.dry_run}, "
                               f"blend={cfg.execution.blend})")

    # ----- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        if self.use_action and self._fjt_client is None:
            self.get_logger().error("output: action needs control_msgs (FollowJointTrajectory);"
                                    " install ros-<distro>-control-msgs or use output: topic")
            return TransitionCallbackReturn.FAILURE
        try:
            emb = self._given_embodiment or load_embodiment(cfg.embodiment)
        except Exception as exc:  # noqa: BLE001 - any load failure is a failed transition
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.embodiment = emb
        self.diag.hardware_id = emb.name
        with self._lock:
            self.core = ChunkExecutor(emb, cfg, goals=self.use_action)
        self._subs = [
            self.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state,
                                     STATE_QOS, callback_group=self._cb),
            self.create_subscription(ActionChunk, CHUNK_TOPIC, self._on_chunk, COMMAND_QOS,
                                     callback_group=self._cb)]
        self._dry_pub = self.create_lifecycle_publisher(JointTrajectory, DRY_RUN_TOPIC,
                                                        COMMAND_QOS)
        if not self.use_action:
            self._traj_pub = self.create_lifecycle_publisher(
                JointTrajectory, f"{cfg.controller}/joint_trajectory", COMMAND_QOS)
        self.get_logger().info(
            f"configured: {emb.name} ({emb.dof} joints) at {1 / emb.control_period:.1f} Hz -> "
            f"{cfg.controller} via "
            f"{'FollowJointTrajectory' if self.use_action else 'joint_trajectory topic'}"
            f"{' (DRY RUN)' if cfg.dry_run else ''}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self.core.restart()  # the robot may have moved while nothing was commanded
            self._active = True
        # A group of its own: in a reentrant group a late tick would overlap the next one.
        self._timer = self.create_timer(self.core.dt, self._tick,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        ret = super().on_activate(state)
        self.get_logger().info("activated")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_ticking()
        with self._lock:
            self._active = False
            decision = self.core.brake(self._now())
        self._send(decision)
        self._resolve(decision.ended)
        self.get_logger().info("deactivated: braking to a hold")
        return super().on_deactivate(state)

    def _halt(self) -> None:
        self.stop()

    def _stop_ticking(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            self.destroy_timer(timer)

    def _release(self) -> None:
        self._stop_ticking()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for pub in (self._traj_pub, self._dry_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._traj_pub = self._dry_pub = None
        with self._lock:
            self.core = None
            self.embodiment = self._given_embodiment

    def _stopped(self) -> bool:
        """Not active, destroyed, or Ctrl-C shut the context down: command nothing more."""
        return not self._active or self._shutting_down or not self.context.ok()

    # ----- inputs -----------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        core = self.core
        if core is None:
            return
        try:
            q = joint_state_to_embodiment(msg, core.embodiment)
        except ConversionError as exc:
            self.diag.count("bad_joint_states")
            self.get_logger().warning(f"ignoring joint_states: {exc}", throttle_duration_sec=5.0)
            return
        now = self._now()
        with self._lock:  # the stamp (when measured) lets the core check the robot follows
            core.observe(now, q, time_to_sec(msg.header.stamp))
        self.diag.rate("joint_states", now)

    def _on_chunk(self, msg: ActionChunk) -> None:
        core = self.core
        if self._stopped() or core is None:
            return
        now = self._now()
        self.diag.rate("action_chunk", now)
        self.diag.set("inference_latency_s", float(msg.inference_latency))
        if is_stop_request(msg, core.embodiment):
            with self._lock:
                core.stop_request()
                ended = core.take_ended()
            self.get_logger().info(f"stop requested ({msg.model_id or 'empty action_chunk'}): "
                                   "holding")
            self._resolve(ended)
            return
        try:
            chunk, obs = msg_to_chunk(msg, core.embodiment)
        except ConversionError as exc:
            core.stats.rejected["shape"] += 1
            self.get_logger().warning(f"rejected chunk: {exc}", throttle_duration_sec=2.0)
            return
        with self._lock:
            now = self._now()
            r = core.submit(chunk, obs, now, takeover=chunk_takeover(msg))
            ended = core.take_ended()
        self.diag.set("chunk_age_s", now - obs)
        if not r.accepted:
            self.get_logger().warning(f"rejected chunk: {r.reason}", throttle_duration_sec=2.0)
        self._resolve(ended)

    # ----- control tick -----------------------------------------------------------------------
    def _tick(self) -> None:
        if self._stopped():
            return
        run = self._goals.current
        if run is not None:
            self._check_cancel(run)  # before this tick's command: a canceled goal holds now
        with self._lock:
            core = self.core
            if core is None:
                return
            # Read under the lock: a command for an older time than the last one would make
            # the scheduler reset (it takes that for the clock jumping back).
            d = core.step(self._now())
            run = self._goals.find(d.goal) if d.goal is not None else None
        if d.went_stale:
            self.get_logger().warning("joint_states stale: holding position",
                                      throttle_duration_sec=2.0)
        if d.not_following:
            self.get_logger().warning(f"holding where the robot is: {d.not_following}",
                                      throttle_duration_sec=2.0)
        if d.command is not None:
            self.diag.set("tracking_error", d.tracking_error)
            self.diag.status(DiagnosticStatus.WARN if d.watchdog_expired else DiagnosticStatus.OK,
                             "watchdog expired: holding" if d.watchdog_expired
                             else ("holding" if d.holding else "executing"))
        if d.feedback is not None and run is not None:
            fb = ExecuteChunk.Feedback(index=d.feedback[0], tracking_error=d.feedback[1])
            with contextlib.suppress(Exception):  # the goal already finished
                run.handle.publish_feedback(fb)
        self._resolve(d.ended)
        self._send(d)

    def _send(self, d: TickDecision) -> None:
        """Send a decision's trajectory where it goes."""
        if d.output is Output.NONE:
            return
        traj = times_to_trajectory(d.times - d.now, d.positions, self.embodiment.joint_names,
                                   stamp=sec_to_time(d.now))
        if d.output is Output.DRY_RUN:
            publish_unless_shutdown(self, self._dry_pub, traj)
        elif d.output is Output.STREAM:
            publish_unless_shutdown(self, self._traj_pub, traj)
        else:
            self._fjt_client.send(traj, d.motion)

    # ----- ExecuteChunk action ----------------------------------------------------------------
    def _on_goal(self, goal_request: Any) -> GoalResponse:
        if self._stopped():
            self.get_logger().warning("ExecuteChunk goal rejected: node is not active")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _resolve(self, ended: list[GoalEnd]) -> None:
        """Resolve the coroutines of goals the core ended."""
        self._goals.finish_ended(ended)

    def _check_cancel(self, run: GoalRun) -> bool:
        """A cancel of ``run`` was accepted: the core holds (unless something newer took over)
        and the goal ends canceled.

        Read from the goal's state, which the action server sets to CANCELING only after the
        cancel callback accepted it, so the goal's coroutine can report CANCELED.
        """
        if not run.handle.is_cancel_requested:
            return False
        with self._lock:
            if self.core is not None:
                self.core.cancel_goal(run.data)
                self._resolve(self.core.take_ended())
        self._goals.finish(run, GoalEnd(run.data, GoalOutcome.CANCELED, "canceled: holding"))
        return True

    def _poll_goal(self, run: GoalRun) -> None:
        """Goal timer (steady clock): end the running goal on cancel or shutdown."""
        if self._check_cancel(run):
            return
        if self._shutting_down or not self.context.ok():
            self._goals.finish(run, GoalEnd(run.data, GoalOutcome.ABORTED,
                                            "executor shutting down"))

    async def _execute(self, goal_handle: Any) -> Any:
        """A goal's coroutine: submits its chunk, awaits the goal's end, finishes it.

        It never blocks an executor thread (see the module docstring for what ends a goal).
        """
        result = ExecuteChunk.Result(outcome=ExecuteChunk.Result.REJECTED)
        core = self.core
        if core is None:  # deactivated and cleaned up since the goal was accepted
            result.message = "the executor is not configured"
            goal_handle.abort()
            return result
        try:
            chunk, obs = msg_to_chunk(goal_handle.request.chunk, core.embodiment)
        except ConversionError as exc:
            core.stats.rejected["shape"] += 1
            result.message = str(exc)
            goal_handle.abort()
            return result
        with self._lock:
            r, goal = core.start_goal(chunk, obs, self._now())
            ended = core.take_ended()
            run = None if goal is None else self._goals.begin(goal_handle, goal)
        self._resolve(ended)  # the previous goal, preempted
        if run is None:
            self.get_logger().warning(f"refused ExecuteChunk goal: {r.reason}")
            result.message = r.reason
            goal_handle.abort()
            return result
        end: GoalEnd = await run.done
        result.outcome = result_code(ExecuteChunk.Result, end.outcome)
        result.message = end.message
        result.executed_points = goal.executed
        result.clipped_points = goal.clipped
        result.max_tracking_error = float(goal.max_error)
        settle(goal_handle, end.outcome, self.context)
        return result

    # ----- shutdown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop commanding (idempotent): hold, end the running ExecuteChunk goal.

        The control tick sends nothing after this; :func:`main` calls it as soon as spinning
        ends (Ctrl-C), before the executor and the node are destroyed.
        """
        self._shutting_down = True
        with self._lock:
            if self.core is not None:
                self.core.stop()
                ended = self.core.take_ended()
            else:
                ended = []
        self._resolve(ended)
        run = self._goals.current
        if run is not None:  # not the core's (it was never configured): end it all the same
            self._goals.finish(run, GoalEnd(run.data, GoalOutcome.ABORTED,
                                            "executor shutting down"))

    def destroy_node(self) -> None:
        self.stop()
        # rclpy's destroy_node leaves waitables (action servers and clients) in the graph.
        self._action_server.destroy()
        if self._fjt_client is not None:
            self._fjt_client.destroy()
        self.diag.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    # Nothing blocks an executor thread (see the module docstring): one thread is enough.
    return spin_node(ExecutorNode, args, before_destroy=lambda n: n.stop(),
                     single_threaded=True)


if __name__ == "__main__":
    sys.exit(main())
