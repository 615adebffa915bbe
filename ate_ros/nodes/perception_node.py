"""perception_node: cameras + joint_states -> ``ate_ros/Observation`` at the policy rate.

Subscribes (relative names, SensorDataQoS depth 1):
    ``<camera topic>`` (sensor_msgs/Image, from the embodiment's camera list) or
    ``<camera topic>/compressed`` (sensor_msgs/CompressedImage) when ``compressed`` is true,
    ``joint_states`` (sensor_msgs/JointState),
    ``instruction`` (std_msgs/String, transient-local: the last instruction is kept).
Publishes:
    ``observation`` (ate_ros/Observation): the freshest synchronised bundle, images resized /
        cropped to the embodiment's camera size, stamped with the newest input's stamp; at
        ``rate_hz`` on the node clock (sim time when use_sim_time), or on every new frame of the
        first camera when ``rate_hz`` is 0, or (``exact_sync``, lock-step simulation) once per
        first-camera stamp as soon as every input has a sample with exactly that stamp.
    ``/diagnostics``: input rates, image ages, refusals.
Inputs older than ``max_age`` (or ``max_skew`` apart) are refused: no observation is published
and the refusal is counted and reported. Parameters: :class:`ate_ros.core.deploy.PerceptionConfig`.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from ate_ros.core.deploy import (
    INSTRUCTION,
    JOINT_STATES,
    OBSERVATION,
    FreshestSync,
    PerceptionConfig,
    prepare_image,
)
from ate_ros.core.embodiment import EmbodimentError, load_embodiment
from ate_ros.msg import Observation
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import ERROR, OK, WARN, NodeDiagnostics
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ate_ros.ros.spin import publish_unless_shutdown, spin_node


def _stamp_s(msg) -> float:
    return conv.time_to_sec(msg.header.stamp)


class PerceptionNode(Node):
    """Builds Observations from the newest camera frames and joint states."""

    def __init__(self, config: PerceptionConfig | None = None, *,
                 node_name: str = "perception_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = DataclassParameters(self, PerceptionConfig, defaults=config)
        cfg = self.config = self.params.config
        self.embodiment = load_embodiment(cfg.embodiment)
        emb = self.embodiment
        self._lock = threading.Lock()
        self.cameras = list(emb.cameras)
        self.sync = FreshestSync([c.name for c in self.cameras] + [JOINT_STATES],
                                 cfg.max_age, cfg.max_skew)
        self.instruction = cfg.instruction
        self.published = 0
        self.last_refusal = ""
        self.bad_inputs = 0
        group = MutuallyExclusiveCallbackGroup()
        self._subs = []
        for i, cam in enumerate(self.cameras):
            if cfg.compressed:
                self._subs.append(self.create_subscription(
                    CompressedImage, cam.topic.rstrip("/") + "/compressed",
                    lambda m, c=cam.name, first=(i == 0): self._on_image(c, m, first),
                    SENSOR_QOS, callback_group=group))
            else:
                self._subs.append(self.create_subscription(
                    Image, cam.topic, lambda m, c=cam.name, first=(i == 0):
                    self._on_image(c, m, first), SENSOR_QOS, callback_group=group))
        self._subs.append(self.create_subscription(JointState, JOINT_STATES, self._on_joints,
                                                   SENSOR_QOS, callback_group=group))
        self._subs.append(self.create_subscription(String, INSTRUCTION, self._on_instruction,
                                                   LATCHED_QOS, callback_group=group))
        self.pub = self.create_publisher(Observation, OBSERVATION, COMMAND_QOS)
        self.timer = None
        self._exact_stamp = -math.inf  # exact_sync: the last stamp published
        if cfg.rate_hz > 0 and not cfg.exact_sync:
            self.timer = self.create_timer(1.0 / cfg.rate_hz, self._publish, callback_group=group)
        self.diagnostics = NodeDiagnostics(self, "perception", period=cfg.diagnostics_period)
        self.diagnostics.add_provider(self._diagnose)
        self.get_logger().info(
            f"perception for {emb.name}: cameras {[c.topic for c in self.cameras]}, "
            f"joint_states, {self._mode()}, "
            f"max_age {cfg.max_age}s")

    def _mode(self) -> str:
        if self.config.exact_sync:
            return "one per stamp (exact sync)"
        return "every frame" if self.config.rate_hz == 0 else f"{self.config.rate_hz} Hz"

    # ----- inputs -------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, camera: str, msg, first: bool) -> None:
        # Decoding waits until an observation is built: frames that are never used cost nothing.
        with self._lock:
            fresh = self.sync.offer(camera, _stamp_s(msg), msg, self._now())
        if not fresh:
            self.last_refusal = f"{camera} image older than max_age={self.config.max_age}s"
            self.get_logger().warning(self.last_refusal, throttle_duration_sec=5.0)
        elif self.config.exact_sync:
            self._publish_exact()
        elif first and self.config.rate_hz == 0:
            self._publish()

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = self.embodiment.order_by_name(list(msg.name), list(msg.position))
        except EmbodimentError as exc:
            self.bad_inputs += 1
            self.get_logger().warning(f"joint_states ignored: {exc}",
                                      throttle_duration_sec=5.0)
            return
        with self._lock:
            fresh = self.sync.offer(JOINT_STATES, _stamp_s(msg), q, self._now())
        if not fresh:
            self.last_refusal = f"joint_states older than max_age={self.config.max_age}s"
        elif self.config.exact_sync:
            self._publish_exact()

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self.get_logger().info(f"instruction: {msg.data!r}")

    # ----- output -------------------------------------------------------------------------
    def _publish_exact(self) -> None:
        """exact_sync: publish once per first-camera stamp that every input has reached."""
        if not self.cameras:
            return
        with self._lock:
            stamp = self.sync.stamp(self.cameras[0].name)
            if stamp is None or stamp <= self._exact_stamp:
                return
            stamps = [self.sync.stamp(n) for n in self.sync.inputs]
            if any(s is None or abs(s - stamp) > 1e-9 for s in stamps):
                return  # another input of this stamp is still on its way
            self._exact_stamp = stamp
        self._publish()

    def _publish(self) -> None:
        now = self._now()
        with self._lock:
            ok, reason = self.sync.check(now)
            if not ok:
                self.last_refusal = reason
                self.get_logger().warning(f"no observation: {reason}",
                                          throttle_duration_sec=5.0)
                return
            frames = {c.name: self.sync.get(c.name) for c in self.cameras}
            q = np.asarray(self.sync.get(JOINT_STATES))
            stamp = self.sync.newest_stamp()
        images = {}
        for cam in self.cameras:
            frame = frames[cam.name]
            try:
                img = (conv.compressed_to_numpy(frame) if self.config.compressed
                       else conv.image_to_numpy(frame))
            except conv.ConversionError as exc:
                self.bad_inputs += 1
                self.last_refusal = f"camera {cam.name}: {exc}"
                self.get_logger().warning(self.last_refusal, throttle_duration_sec=5.0)
                return
            images[cam.name] = prepare_image(img, cam.width, cam.height, self.config.crop)
        msg = conv.observation_to_msg(images, self.embodiment.joint_names, q,
                                      conv.sec_to_time(stamp), self.instruction,
                                      self.embodiment.base_frame)
        if publish_unless_shutdown(self, self.pub, msg):  # nothing once Ctrl-C shut it down
            self.published += 1

    def _diagnose(self) -> dict:
        now = self._now()
        with self._lock:
            ages = self.sync.ages(now)
            refused = dict(self.sync.refused)
            received = dict(self.sync.received)
        if self.bad_inputs and not self.published:
            self.diagnostics.status(ERROR, f"malformed inputs: {self.last_refusal}")
        elif self.last_refusal:
            self.diagnostics.status(WARN, self.last_refusal)
        else:
            self.diagnostics.status(OK, "publishing" if self.published else "waiting")
        # A refusal is reported once; the next period shows whether it persists.
        self.last_refusal = ""
        out = {"observations_published": self.published, "malformed_inputs": self.bad_inputs}
        out.update({f"{n}_received": k for n, k in received.items()})
        out.update({f"{n}_age_s": a for n, a in ages.items()})
        out.update({f"refused_{k}": n for k, n in refused.items()})
        return out


def main(args: list[str] | None = None) -> int:
    # All callbacks share one mutually exclusive group: a single thread loses nothing.
    return spin_node(PerceptionNode, args, single_threaded=True)


if __name__ == "__main__":
    sys.exit(main())
