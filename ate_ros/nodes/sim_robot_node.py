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
graph has produced the observation, chunk and command of that tick, which reproduces
``ate_ros.core.sim.evaluate``'s loop.

Otherwise the node owns the clock, so the simulation runs in a thread of its own paced by the
monotonic (wall) clock (MuJoCo's GL context is bound to one thread): each tick advances the
simulation by ``real_time_factor * tick_period`` sim seconds (a fixed step: an overloaded
machine slows sim time down rather than skipping physics). Both protocols are the ROS-free
:class:`ate_ros.core.sim.stepping.SimStepper`'s; this node is its host (the ROS calls).
Parameters: :class:`ate_ros.core.deploy.SimRobotConfig`.
"""

from __future__ import annotations

import sys
import threading

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
from ate_ros.core.sim.stepping import InProcessExecutor, SimStepper
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import OK, NodeDiagnostics
from ate_ros.ros.node_logger import quiet_logging_after_shutdown
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ate_ros.ros.spin import publish_unless_shutdown, spin_node

DEFAULT_TASK = "reach"
ROBOT_DESCRIPTION = "robot_description"
"""Topic of the URDF: relative, like robot_state_publisher's (RViz reads /robot_description)."""


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
        quiet_logging_after_shutdown(self)  # Ctrl-C while it loads: no rosout errors
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
        self.success = False
        self.commands = 0
        self.rejected = 0
        # Guards the follower between the trajectory callback and the simulation thread.
        self._lock = threading.Lock()
        self.stepper = SimStepper(self.env, self, lambda: self.config)
        self.episode_over = self.stepper.episode_over
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

    def now_ns(self) -> int:
        """The ROS time of now, ns (:class:`ate_ros.core.sim.stepping.StepperHost`)."""
        return self.time_base_ns + round(self.env.time * 1e9)

    @property
    def lockstep_waits(self) -> int:
        """Lock-step waits that gave up after ``lockstep_timeout``."""
        return self.stepper.lockstep_waits

    # ----- episode control ----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.stepper.started.is_set()

    def start_episode(self) -> None:
        """Start the episode (idempotent): the simulation starts ticking from the reset state.

        The episode's ROS time base is the next control-period multiple after the last
        published clock, so node timers created at time 0 (the executor's control tick) fire on
        the episode's control ticks.
        """
        if self.started:
            return
        self.time_base_ns = self.period_ns
        with self._lock:
            self.follower = TrajectoryFollower(self.env.qpos(), self.ros_time)
        if self.instruction_pub is not None:
            publish_unless_shutdown(self, self.instruction_pub, String(data=self.env.instruction))
        self.stepper.start()
        self.get_logger().info(f"episode started (seed {self.config.seed})")

    def couple_executor(self, executor: InProcessExecutor) -> None:
        """Lock-step in one process: ask ``executor`` when it wants a chunk and whether it has
        taken it (:class:`ate_ros.core.sim.stepping.InProcessExecutor`)."""
        self.stepper.executor = executor

    def pause(self) -> None:
        """Stop advancing simulated time (the episode is over for this node)."""
        self.stepper.pause()

    # ----- inputs -------------------------------------------------------------------------
    def _on_chunk(self, msg) -> None:
        self.stepper.chunk_arrived(conv.time_to_ns(msg.header.stamp))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            times, pos = conv.trajectory_to_points(msg, self.embodiment)
            with self._lock:
                self.follower.set_trajectory(conv.time_to_sec(msg.header.stamp), times, pos,
                                             now=self.ros_time)
        except ValueError as exc:  # ConversionError too: another robot's joints, no points
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: {exc}")
            return
        self.commands += 1
        if self.config.lockstep:
            self.stepper.command_arrived(conv.time_to_ns(msg.header.stamp), times, pos)

    # ----- simulation thread (SimStepper's host) ------------------------------------------
    def ok(self) -> bool:
        """The simulation thread goes on (the context not shut down by Ctrl-C)."""
        return rclpy.ok(context=self.context)

    def target(self) -> np.ndarray:
        """The commanded target at the ROS time of now."""
        with self._lock:
            return self.follower.sample(self.ros_time)

    def _loop(self) -> None:
        """Simulation thread: wait for the start, then tick (wall-paced or lock-step)."""
        try:
            self.stepper.run(self.config.lockstep)
        except Exception as exc:  # noqa: BLE001 - report, never die silently
            if rclpy.ok(context=self.context):
                self.get_logger().error(f"simulation thread stopped: {exc!r}")
        finally:
            self.env.close()

    def check_success(self) -> None:
        ok = bool(self.env.success())
        if ok != self.success:
            self.success = ok
            if publish_unless_shutdown(self, self.success_pub, Bool(data=ok)):
                self.get_logger().info(f"task success: {ok} at t={self.sim_time:.2f}s")

    def publish_clock(self, stamp_ns: int) -> None:
        if self.clock_pub is not None:
            publish_unless_shutdown(self, self.clock_pub,
                                    ClockMsg(clock=conv.ns_to_time(stamp_ns)))

    def publish_state(self, images: bool, stamp_ns: int) -> None:
        stamp = conv.ns_to_time(stamp_ns)
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
        if images:
            for cam in self.embodiment.cameras:
                msg = conv.numpy_to_image(self.env.render(cam.name), stamp=stamp,
                                          frame_id=cam.name)
                publish_unless_shutdown(self, self.cam_pubs[cam.name], msg)

    def _diagnose(self) -> dict:
        rtf = self.stepper.measured_real_time_factor()
        self.diagnostics.status(OK, f"t={self.sim_time:.2f}s, success={self.success}")
        return {"sim_time_s": self.sim_time, "measured_real_time_factor": rtf,
                "trajectories_received": self.commands, "trajectories_rejected": self.rejected,
                "task": self.env.task.name, "success": self.success,
                "started": self.started, "lockstep_timeouts": self.lockstep_waits}

    def stop(self) -> None:
        """Stop the simulation thread (idempotent; also after a constructor that failed part
        way, so its clean-up never hides the constructor's own error)."""
        stepper, thread = getattr(self, "stepper", None), getattr(self, "_thread", None)
        if stepper is not None:
            stepper.stop()
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
