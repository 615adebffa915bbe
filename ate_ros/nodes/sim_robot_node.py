"""sim_robot_node: the MuJoCo simulation (``ate_ros.core.sim``) as a ROS 2 robot.

Publishes (relative names unless absolute):
    ``/clock`` (rosgraph_msgs/Clock): simulated time, for nodes with use_sim_time;
    ``joint_states`` (sensor_msgs/JointState) at ``joint_state_rate_hz`` of sim time;
    ``<camera topic>`` (sensor_msgs/Image, rgb8) per embodiment camera at ``camera_rate_hz``;
    ``task_success`` (std_msgs/Bool, transient-local), on change;
    ``/diagnostics``.
Subscribes:
    ``<controller>/joint_trajectory`` (trajectory_msgs/JointTrajectory): the ros2_control topic
    interface. Points are interpolated linearly in sim time; a new trajectory replaces the future
    part of the current one, a future ``header.stamp`` defers its start, a zero stamp means now
    (joint_trajectory_controller semantics, :class:`ate_ros.core.deploy.TrajectoryFollower`).

The node owns the clock, so the simulation runs in a thread of its own paced by the monotonic
(wall) clock (MuJoCo's GL context is bound to one thread): each tick advances the simulation by
``real_time_factor * tick_period`` sim seconds (a fixed step: an overloaded machine slows sim
time down rather than skipping physics). Parameters:
:class:`ate_ros.core.deploy.SimRobotConfig`.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from ate_ros.core.deploy import (
    JOINT_STATES,
    TASK_SUCCESS,
    SimRobotConfig,
    TrajectoryFollower,
    resolve_embodiment,
)
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import OK, NodeDiagnostics
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS

DEFAULT_TASK = "reach"
MAX_SUBSTEP = 0.01
"""Sim seconds between trajectory samples (targets are updated at 100 Hz of sim time)."""


def default_embodiment() -> str:
    from ate_ros.core import sim

    return getattr(sim, "ADAPT_EMBODIMENT", "sim_arm7")


def _stamp(seconds: float):
    return conv.sec_to_time(seconds)


class SimRobotNode(Node):
    """A simulated arm with joint_states, cameras, /clock and a trajectory command topic."""

    def __init__(self, config: SimRobotConfig | None = None, *,
                 node_name: str = "sim_robot_node", **kwargs) -> None:
        # The simulation is the clock: never run this node itself on /clock.
        overrides = [p for p in kwargs.pop("parameter_overrides", None) or []
                     if p.name != "use_sim_time"]
        overrides.append(Parameter("use_sim_time", Parameter.Type.BOOL, False))
        super().__init__(node_name, parameter_overrides=overrides, **kwargs)
        self.params = DataclassParameters(self, SimRobotConfig, defaults=config)
        cfg = self.config = self.params.config
        from ate_ros.core.sim.env import SimEnv  # mujoco: imported with the node, not the module

        self.embodiment = resolve_embodiment(cfg.embodiment or default_embodiment())
        emb = self.embodiment
        self.env = SimEnv(emb, cfg.task or DEFAULT_TASK, seed=cfg.seed)
        self.env.reset(seed=cfg.seed, render=False)
        self.follower = TrajectoryFollower(self.env.qpos(), self.env.time)
        self._index = {n: i for i, n in enumerate(emb.joint_names)}
        self.success = False
        self.commands = 0
        self.rejected = 0
        self._next_js = 0.0
        self._next_cam = 0.0
        self._wall0 = time.monotonic()
        self._sim0 = self.env.time
        self.clock_pub = (self.create_publisher(ClockMsg, "/clock", 10)
                          if cfg.publish_clock else None)
        self.js_pub = self.create_publisher(JointState, JOINT_STATES, 10)
        self.cam_pubs = {c.name: self.create_publisher(Image, c.topic, SENSOR_QOS)
                         for c in emb.cameras}
        self.success_pub = self.create_publisher(Bool, TASK_SUCCESS, LATCHED_QOS)
        self.success_pub.publish(Bool(data=False))
        self.cmd_sub = self.create_subscription(
            JointTrajectory, f"{cfg.controller}/joint_trajectory", self._on_trajectory,
            COMMAND_QOS)
        self.diagnostics = NodeDiagnostics(self, "sim_robot", period=1.0)
        self.diagnostics.add_provider(self._diagnose)
        # MuJoCo's GL context belongs to the thread that created it, and executor threads vary:
        # the simulation (physics, rendering, publishing) runs in one thread of its own.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim_robot", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"sim robot {emb.name} task {self.env.task.name!r} ({self.env.instruction!r}), "
            f"x{cfg.real_time_factor} real time, commands on {cfg.controller}/joint_trajectory")

    @property
    def sim_time(self) -> float:
        return self.env.time

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
                self.follower.set_trajectory(start, times, pos, now=self.sim_time)
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"trajectory rejected: {exc}")
            return
        self.commands += 1

    def _loop(self) -> None:
        """Simulation thread: tick at ``tick_period`` of wall (monotonic) time until stopped."""
        try:
            self._publish_state(images=True)
            next_tick = time.monotonic()
            while not self._stop.is_set():
                next_tick += self.config.tick_period
                self._tick()
                delay = next_tick - time.monotonic()
                if delay < -1.0:  # far behind (overloaded machine): do not try to catch up
                    next_tick = time.monotonic()
                self._stop.wait(max(0.0, delay))
        except Exception as exc:  # noqa: BLE001 - report, never die silently
            if rclpy.ok(context=self.context):
                self.get_logger().error(f"simulation thread stopped: {exc!r}")
        finally:
            self.env.close()

    def _tick(self) -> None:
        cfg = self.config
        if cfg.max_duration > 0 and self.sim_time - self._sim0 >= cfg.max_duration:
            return
        remaining = cfg.real_time_factor * cfg.tick_period
        while remaining > 1e-9:
            step = min(MAX_SUBSTEP, remaining)
            with self._lock:
                target = self.follower.sample(self.sim_time)
            self.env.set_targets(target)
            self.env.advance(step)
            remaining -= step
        t = self.sim_time
        if self.clock_pub is not None:
            self.clock_pub.publish(ClockMsg(clock=_stamp(t)))
        images = t + 1e-9 >= self._next_cam
        if t + 1e-9 >= self._next_js or images:
            self._publish_state(images)
        ok = bool(self.env.success())
        if ok != self.success:
            self.success = ok
            self.success_pub.publish(Bool(data=ok))
            self.get_logger().info(f"task success: {ok} at t={t:.2f}s")

    def _publish_state(self, images: bool) -> None:
        t = self.sim_time
        stamp = _stamp(t)
        js = JointState()
        js.header.stamp = stamp
        js.name = self.embodiment.joint_names
        js.position = self.env.qpos().tolist()
        js.velocity = self.env.qvel().tolist()
        self.js_pub.publish(js)
        self._next_js = t + 1.0 / self.config.joint_state_rate_hz
        if images:
            for cam in self.embodiment.cameras:
                msg = conv.numpy_to_image(self.env.render(cam.name), stamp=stamp,
                                          frame_id=cam.name)
                self.cam_pubs[cam.name].publish(msg)
            self._next_cam = t + 1.0 / self.config.camera_rate_hz

    def _diagnose(self) -> dict:
        wall = time.monotonic() - self._wall0
        rtf = (self.sim_time - self._sim0) / wall if wall > 0 else 0.0
        self.diagnostics.status(OK, f"t={self.sim_time:.2f}s, success={self.success}")
        return {"sim_time_s": self.sim_time, "measured_real_time_factor": rtf,
                "trajectories_received": self.commands, "trajectories_rejected": self.rejected,
                "task": self.env.task.name, "success": self.success}

    def stop(self) -> None:
        """Stop the simulation thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SimRobotNode()
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
