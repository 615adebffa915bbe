"""sim_robot_node: the MuJoCo simulation (``ate_ros.core.sim``) as a ROS 2 robot.

Publishes (relative names unless absolute):
    ``/clock`` (rosgraph_msgs/Clock): simulated time, for nodes with use_sim_time;
    ``joint_states`` (sensor_msgs/JointState) at ``joint_state_rate_hz`` of sim time;
    ``environment_state`` (ate_ros/EnvironmentState, layout
    :data:`ate_ros.core.sim.object_labels.ENV_STATE_NAMES`): the low-dimensional scene state of
    ``low_dim`` policies, published just before every joint_states with the same stamp (not at
    the camera rate: a camera-less low-dim policy is paced by joint_states, and its inputs are
    synchronised by stamp, so both must come together; 27 floats cost nothing);
    ``<camera topic>`` (sensor_msgs/Image, rgb8) per embodiment camera at ``camera_rate_hz``;
    ``task_success`` (std_msgs/Bool, transient-local), on change;
    ``robot_description`` (std_msgs/String, transient-local): the arm's URDF, generated from the
    MuJoCo model (:func:`ate_ros.core.sim.urdf.urdf_from_model`), once at start (even when
    ``start_paused``), for RViz's RobotModel; joint names are those of ``joint_states``;
    ``/diagnostics``.
Subscribes:
    ``<controller>/joint_trajectory`` (trajectory_msgs/JointTrajectory): the ros2_control topic
    interface. Points are interpolated linearly in sim time; a new trajectory replaces the future
    part of the current one, a future ``header.stamp`` defers its start, a zero stamp means now
    (joint_trajectory_controller semantics, :class:`ate_ros.core.deploy.TrajectoryFollower`).

Episode start: with ``start_paused`` nothing is published until :meth:`SimRobotNode.start_episode`
(or a message on ``~/start``); the episode's ROS time then starts at one control period (so
timers created at time 0, such as the executor's control tick, fire on the episode's control
ticks) and ``sim_time`` counts from 0. The task instruction goes out on the latched
``instruction`` topic. ``lockstep``: the simulation advances one control period only after the
graph has produced the observation, chunk and command of that tick (see
:meth:`SimRobotNode._lockstep_loop`), which reproduces ``ate_ros.core.sim.evaluate``'s loop.

Otherwise the node owns the clock, so the simulation runs in a thread of its own paced by the
monotonic (wall) clock (MuJoCo's GL context is bound to one thread): each tick advances the
simulation by ``real_time_factor * tick_period`` sim seconds (a fixed step: an overloaded
machine slows sim time down rather than skipping physics). Parameters:
:class:`ate_ros.core.deploy.SimRobotConfig`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Empty, String
from trajectory_msgs.msg import JointTrajectory

from ate_ros.core.deploy import (
    ACTION_CHUNK,
    ENV_STATE,
    INSTRUCTION,
    JOINT_STATES,
    TASK_SUCCESS,
    SimRobotConfig,
    TrajectoryFollower,
)
from ate_ros.core.embodiment import load_embodiment
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import OK, NodeDiagnostics
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ate_ros.ros.spin import publish_unless_shutdown, spin_node

DEFAULT_TASK = "reach"
ROBOT_DESCRIPTION = "robot_description"
"""Topic of the URDF: relative, like robot_state_publisher's (RViz reads /robot_description)."""
MAX_SUBSTEP = 0.01
"""Sim seconds between trajectory samples (targets are updated at 100 Hz of sim time)."""


def default_embodiment() -> str:
    from ate_ros.core import sim

    return getattr(sim, "ADAPT_EMBODIMENT", "sim_arm7")


class SimRobotNode(Node):
    """A simulated arm with joint_states, cameras, /clock and a trajectory command topic."""

    def __init__(self, config: SimRobotConfig | None = None, *,
                 node_name: str = "sim_robot_node", **kwargs) -> None:
        # The simulation is the clock: never run this node itself on /clock.
        overrides = [p for p in kwargs.pop("parameter_overrides", None) or []
                     if p.name != "use_sim_time"]
        overrides.append(Parameter("use_sim_time", Parameter.Type.BOOL, False))
        super().__init__(node_name, parameter_overrides=overrides, **kwargs)
        self.params = DataclassParameters(self, SimRobotConfig, defaults=config,
                                          on_change=self._on_params)
        cfg = self.config = self.params.config
        from ate_ros.core.sim.env import SimEnv  # mujoco: imported with the node, not the module

        self.embodiment = load_embodiment(cfg.embodiment or default_embodiment())
        emb = self.embodiment
        self.env = SimEnv(emb, cfg.task or DEFAULT_TASK, seed=cfg.seed)
        self.env.reset(seed=cfg.seed, render=False)
        self.period_ns = round(1e9 * self.env.control_period)
        self.time_base_ns = 0  # ROS time of the episode's t=0 (set when the episode starts)
        self.follower = TrajectoryFollower(self.env.qpos(), self.ros_time)
        self._index = {n: i for i, n in enumerate(emb.joint_names)}
        self.success = False
        self.commands = 0
        self.rejected = 0
        self.lockstep_waits = 0  # lock-step ticks that advanced after lockstep_timeout
        self._next_js = 0.0
        self._next_cam = 0.0
        self._wall0 = time.monotonic()
        self._sim0 = self.env.time
        self._started = threading.Event()
        self._paused = threading.Event()
        self.episode_over = threading.Event()
        # Lock-step book-keeping: newest chunk / command stamps seen (ns), woken on arrival.
        self._cv = threading.Condition()
        self._chunk_ns = -1
        self._cmd_ns = -1
        self._step_target: np.ndarray | None = None
        self.needs_observation: Callable[[float], bool] | None = None
        self.chunk_handled: Callable[[], int] | None = None
        self.executor_state: Callable[[], tuple[int, bool]] | None = None
        self.clock_pub = (self.create_publisher(ClockMsg, "/clock", 10)
                          if cfg.publish_clock else None)
        self.js_pub = self.create_publisher(JointState, JOINT_STATES, 10)
        from ate_ros.core.sim.object_labels import ENV_STATE_NAMES
        from ate_ros.msg import EnvironmentState

        self.env_state_names = list(ENV_STATE_NAMES)
        self.env_state_pub = self.create_publisher(EnvironmentState, ENV_STATE, 10)
        self.cam_pubs = {c.name: self.create_publisher(Image, c.topic, SENSOR_QOS)
                         for c in emb.cameras}
        self.success_pub = self.create_publisher(Bool, TASK_SUCCESS, LATCHED_QOS)
        self.success_pub.publish(Bool(data=False))
        self.instruction_pub = (self.create_publisher(String, INSTRUCTION, LATCHED_QOS)
                                if cfg.publish_instruction else None)
        self.robot_description = ""
        self.robot_description_pub = None
        if cfg.publish_robot_description:
            from ate_ros.core.sim.urdf import urdf_from_model

            self.robot_description = urdf_from_model(self.env.model, emb)
            self.robot_description_pub = self.create_publisher(String, ROBOT_DESCRIPTION,
                                                               LATCHED_QOS)
            self.robot_description_pub.publish(String(data=self.robot_description))
        self.cmd_sub = self.create_subscription(
            JointTrajectory, f"{cfg.controller}/joint_trajectory", self._on_trajectory,
            COMMAND_QOS)
        self.start_sub = self.create_subscription(Empty, "~/start",
                                                  lambda _m: self.start_episode(), 1)
        if cfg.lockstep:
            from ate_ros.msg import ActionChunk

            self.chunk_sub = self.create_subscription(ActionChunk, ACTION_CHUNK,
                                                      self._on_chunk, COMMAND_QOS)
        self.diagnostics = NodeDiagnostics(self, "sim_robot", period=1.0)
        self.diagnostics.add_provider(self._diagnose)
        # MuJoCo's GL context belongs to the thread that created it, and executor threads vary:
        # the simulation (physics, rendering, publishing) runs in one thread of its own.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim_robot", daemon=True)
        self._thread.start()
        if not cfg.start_paused:
            self.start_episode()
        self.get_logger().info(
            f"sim robot {emb.name} task {self.env.task.name!r} ({self.env.instruction!r}), "
            f"{'lock-step' if cfg.lockstep else f'x{cfg.real_time_factor} real time'}, "
            f"commands on {cfg.controller}/joint_trajectory"
            f"{', waiting for start' if cfg.start_paused else ''}")

    def _on_params(self, config: SimRobotConfig) -> None:
        """A run-time parameter set (rates, real_time_factor, lockstep_timeout, max_duration):
        the loops read the config at every tick."""
        self.config = config

    # ----- time ---------------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        """Simulated seconds since the episode started."""
        return self.env.time

    @property
    def ros_time(self) -> float:
        """The ROS time (/clock, stamps) of now: the episode's time base + sim time."""
        return self.time_base_ns * 1e-9 + self.env.time

    def _now_ns(self) -> int:
        return self.time_base_ns + round(self.env.time * 1e9)

    # ----- episode control ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started.is_set()

    def start_episode(self) -> None:
        """Start the episode (idempotent): the simulation starts ticking from the reset state.

        The episode's ROS time base is the next control-period multiple after the last
        published clock, so node timers created at time 0 (the executor's control tick) fire on
        the episode's control ticks.
        """
        if self._started.is_set():
            return
        self.time_base_ns = self.period_ns
        with self._lock:
            self.follower = TrajectoryFollower(self.env.qpos(), self.ros_time)
        if self.instruction_pub is not None:
            publish_unless_shutdown(self, self.instruction_pub, String(data=self.env.instruction))
        self._sim0 = self.env.time
        self._wall0 = time.monotonic()
        self._started.set()
        self.get_logger().info(f"episode started (seed {self.config.seed})")

    def couple_executor(self, executor) -> None:
        """Lock-step in one process: ask ``executor`` (``needs_chunk``, ``chunks_handled``,
        ``command_state``) when it wants a chunk and whether it has taken it."""
        self.needs_observation = executor.needs_chunk
        self.chunk_handled = executor.chunks_handled
        self.executor_state = executor.command_state

    def pause(self) -> None:
        """Stop advancing simulated time (the episode is over for this node)."""
        self._paused.set()
        with self._cv:
            self._cv.notify_all()

    # ----- inputs -------------------------------------------------------------------------
    def _on_chunk(self, msg) -> None:
        with self._cv:
            self._chunk_ns = max(self._chunk_ns, conv.time_to_ns(msg.header.stamp))
            self._cv.notify_all()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            cols = [self._index[n] for n in msg.joint_names]
        except KeyError as exc:
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: unknown joint {exc}")
            return
        if sorted(cols) != list(range(self.embodiment.dof)) or not msg.points:
            self.rejected += 1
            self.get_logger().warning(
                f"trajectory rejected: needs all of {self.embodiment.joint_names} and points")
            return
        times = np.array([conv.duration_to_sec(p.time_from_start) for p in msg.points])
        pos = np.empty((len(msg.points), self.embodiment.dof))
        pos[:, cols] = np.array([p.positions for p in msg.points], dtype=np.float64)
        start = conv.time_to_sec(msg.header.stamp)
        try:
            with self._lock:
                self.follower.set_trajectory(start, times, pos, now=self.ros_time)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: {exc}")
            return
        self.commands += 1
        if self.config.lockstep:
            # The command for the tick at the stamp: its first point after the stamp (the
            # executor's target for the end of the control period), held for the period.
            future = np.nonzero(times > 1e-9)[0]
            with self._cv:
                self._step_target = pos[future[0] if future.size else -1].copy()
                self._cmd_ns = max(self._cmd_ns, conv.time_to_ns(msg.header.stamp))
                self._cv.notify_all()

    # ----- simulation thread --------------------------------------------------------------
    def _running(self) -> bool:
        """The simulation thread goes on (not stopped, the context not shut down by Ctrl-C)."""
        return not self._stop.is_set() and rclpy.ok(context=self.context)

    def _loop(self) -> None:
        """Simulation thread: wait for the start, then tick (wall-paced or lock-step)."""
        try:
            while not self._started.wait(0.05):
                if not self._running():
                    return
            if self.config.lockstep:
                self._lockstep_loop()
            else:
                self._realtime_loop()
        except Exception as exc:  # noqa: BLE001 - report, never die silently
            if rclpy.ok(context=self.context):
                self.get_logger().error(f"simulation thread stopped: {exc!r}")
        finally:
            self.env.close()

    def _halted(self) -> bool:
        cfg = self.config
        return self._paused.is_set() or (
            cfg.max_duration > 0 and self.sim_time - self._sim0 >= cfg.max_duration - 1e-9)

    def _realtime_loop(self) -> None:
        """Tick at ``tick_period`` of wall (monotonic) time until stopped."""
        self._publish_clock()
        self._publish_state(images=True)
        next_tick = time.monotonic()
        while self._running():
            next_tick += self.config.tick_period
            self._tick()
            delay = next_tick - time.monotonic()
            if delay < -1.0:  # far behind (overloaded machine): do not try to catch up
                next_tick = time.monotonic()
            self._stop.wait(max(0.0, delay))

    def _tick(self) -> None:
        cfg = self.config
        if self._halted():
            if not self.episode_over.is_set():
                self.episode_over.set()
            return
        remaining = cfg.real_time_factor * cfg.tick_period
        while remaining > 1e-9:
            step = min(MAX_SUBSTEP, remaining)
            with self._lock:
                target = self.follower.sample(self.ros_time)
            self.env.set_targets(target)
            self.env.advance(step)
            remaining -= step
        self._publish_clock()
        t = self.sim_time
        images = t + 1e-9 >= self._next_cam
        if t + 1e-9 >= self._next_js or images:
            self._publish_state(images)
        self._check_success()

    def _wait(self, ready: Callable[[], bool], poll: float = 0.05) -> bool:
        """Wait (lockstep_timeout wall seconds at most) until ``ready()``; False on timeout."""
        end = time.monotonic() + self.config.lockstep_timeout
        with self._cv:
            while not ready():
                left = end - time.monotonic()
                if left <= 0 or not self._running() or self._paused.is_set():
                    return ready()
                self._cv.wait(min(left, poll))
        return True

    def _lockstep_loop(self) -> None:
        """One control period per iteration, each only after its observation, chunk, command.

        Per tick at ROS time T: /clock T-1ns; joint_states (+ images when an observation is due)
        stamped T; wait for the chunk stamped T (and, in-process, for the executor to have
        handled it); /clock T (the executor's control tick fires and commands); wait for the
        command stamped T; step the simulation one control period holding that target.
        """
        env = self.env
        while self._running():
            if env.done() or self._halted():
                self._check_success()
                self.episode_over.set()
                self._stop.wait(0.05)
                continue
            now_ns = self._now_ns()
            t = now_ns * 1e-9
            self._publish_clock(now_ns - 1)  # stamps of this tick are "now" for the graph
            due = (self.needs_observation(t) if self.needs_observation is not None
                   else self.sim_time + 1e-9 >= self._next_cam)
            handled0 = self.chunk_handled() if self.chunk_handled is not None else 0
            self._publish_state(images=due, stamp_ns=now_ns)
            if due:
                ok = self._wait(lambda n=now_ns: self._chunk_ns >= n)
                if ok and self.chunk_handled is not None:
                    # Not notified: poll the (in-process) executor's counter.
                    ok = self._wait(lambda h=handled0: self.chunk_handled() > h, poll=0.0005)
                elif ok:
                    time.sleep(0.005)  # let the executor take the chunk before its tick
                if not ok:
                    self.lockstep_waits += 1
            ticks0 = self.executor_state()[0] if self.executor_state is not None else 0
            self._publish_clock(now_ns)
            if not self._wait_command(now_ns, ticks0):
                self.lockstep_waits += 1  # no command: keep the target
            with self._cv:
                target = self._step_target
            if target is None:
                target = env.target
            env.step(target, render=False)
            self._check_success()

    def _wait_command(self, now_ns: int, ticks0: int) -> bool:
        """Wait for the executor's command of the tick at ``now_ns``.

        The executor does not repeat an identical hold while the arm is at rest. In-process
        (``executor_state``: its command counter and whether it holds at rest) the wait ends
        once it has ticked and holds at rest: the target is then the previous one anyway.
        """
        if self.executor_state is not None:
            if not self._wait(lambda: self.executor_state()[0] > ticks0, poll=0.0005):
                return False
            if self.executor_state()[1]:
                return True
        return self._wait(lambda: self._cmd_ns >= now_ns)

    def _check_success(self) -> None:
        ok = bool(self.env.success())
        if ok != self.success:
            self.success = ok
            if publish_unless_shutdown(self, self.success_pub, Bool(data=ok)):
                self.get_logger().info(f"task success: {ok} at t={self.sim_time:.2f}s")

    def _publish_clock(self, stamp_ns: int | None = None) -> None:
        if self.clock_pub is not None:
            ns = self._now_ns() if stamp_ns is None else stamp_ns
            publish_unless_shutdown(self, self.clock_pub, ClockMsg(clock=conv.ns_to_time(ns)))

    def _publish_state(self, images: bool, stamp_ns: int | None = None) -> None:
        t = self.sim_time
        stamp = conv.ns_to_time(self._now_ns() if stamp_ns is None else stamp_ns)
        # Before joint_states: a reader paced by joint_states then finds the state of its stamp.
        env = conv.env_state_to_msg(self.env.environment_state(), self.env_state_names, stamp,
                                    self.embodiment.base_frame)
        if not publish_unless_shutdown(self, self.env_state_pub, env):
            return  # Ctrl-C: the context is shut down
        js = JointState()
        js.header.stamp = stamp
        js.name = self.embodiment.joint_names
        js.position = self.env.qpos().tolist()
        js.velocity = self.env.qvel().tolist()
        if not publish_unless_shutdown(self, self.js_pub, js):
            return  # Ctrl-C: the context is shut down
        self._next_js = t + 1.0 / self.config.joint_state_rate_hz
        if images:
            for cam in self.embodiment.cameras:
                msg = conv.numpy_to_image(self.env.render(cam.name), stamp=stamp,
                                          frame_id=cam.name)
                publish_unless_shutdown(self, self.cam_pubs[cam.name], msg)
            self._next_cam = t + 1.0 / self.config.camera_rate_hz

    def _diagnose(self) -> dict:
        wall = time.monotonic() - self._wall0
        rtf = (self.sim_time - self._sim0) / wall if wall > 0 else 0.0
        self.diagnostics.status(OK, f"t={self.sim_time:.2f}s, success={self.success}")
        return {"sim_time_s": self.sim_time, "measured_real_time_factor": rtf,
                "trajectories_received": self.commands, "trajectories_rejected": self.rejected,
                "task": self.env.task.name, "success": self.success,
                "started": self.started, "lockstep_timeouts": self.lockstep_waits}

    def stop(self) -> None:
        """Stop the simulation thread (idempotent; also after a constructor that failed part
        way, so its clean-up never hides the constructor's own error)."""
        stop, cv, thread = (getattr(self, n, None) for n in ("_stop", "_cv", "_thread"))
        if stop is not None:
            stop.set()
        if cv is not None:
            with cv:
                cv.notify_all()
        if (thread is not None and thread.is_alive()
                and thread is not threading.current_thread()):
            thread.join(timeout=10.0)

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(SimRobotNode, args, before_destroy=lambda n: n.stop())


if __name__ == "__main__":
    sys.exit(main())
