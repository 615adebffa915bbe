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
and the refusal is counted and reported; joint_states naming other joints or holding NaN/inf are
dropped as malformed. The inputs are :class:`ate_ros.ros.sensor_inputs.SensorInputs`, which
policy_node uses itself with ``observation_source: sensors`` (no perception_node then).
Parameters: :class:`ate_ros.core.deploy.PerceptionConfig`; run-time sets of ``max_age``,
``max_skew``, ``crop``, ``instruction`` and ``rate_hz`` apply at once.
"""

from __future__ import annotations

import sys

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from ate_ros.core.deploy import OBSERVATION, PerceptionConfig
from ate_ros.core.embodiment import load_embodiment
from ate_ros.msg import Observation
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import ERROR, OK, WARN, NodeDiagnostics
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS
from ate_ros.ros.sensor_inputs import SensorInputs
from ate_ros.ros.spin import publish_unless_shutdown, spin_node


class PerceptionNode(Node):
    """Builds Observations from the newest camera frames and joint states."""

    def __init__(self, config: PerceptionConfig | None = None, *,
                 node_name: str = "perception_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = DataclassParameters(self, PerceptionConfig, defaults=config,
                                          on_change=self._reconfigure)
        cfg = self.config = self.params.config
        self.embodiment = load_embodiment(cfg.embodiment)
        self.published = 0
        self._group = MutuallyExclusiveCallbackGroup()
        self.inputs = SensorInputs(self, self.embodiment, cfg, callback_group=self._group,
                                   on_ready=self._publish, event_driven=cfg.rate_hz == 0)
        self.pub = self.create_publisher(Observation, OBSERVATION, COMMAND_QOS)
        self.timer = None
        self._start_timer()
        self.diagnostics = NodeDiagnostics(self, "perception", period=cfg.diagnostics_period)
        self.diagnostics.add_provider(self._diagnose)
        self.get_logger().info(
            f"perception for {self.embodiment.name}: cameras "
            f"{[c.topic for c in self.embodiment.cameras]}, joint_states, {self._mode()}, "
            f"max_age {cfg.max_age}s")

    def _start_timer(self) -> None:
        cfg = self.config
        if cfg.rate_hz > 0 and not cfg.exact_sync:
            self.timer = self.create_timer(1.0 / cfg.rate_hz, self._publish,
                                           callback_group=self._group)

    def _reconfigure(self, cfg: PerceptionConfig) -> None:
        """A run-time parameter change: new ages/crop/instruction, and the rate (event-driven
        at 0)."""
        rate_changed = cfg.rate_hz != self.config.rate_hz
        self.config = cfg
        self.inputs.reconfigure(cfg)
        if rate_changed:
            if self.timer is not None:
                self.destroy_timer(self.timer)
                self.timer = None
            self._start_timer()
            self.inputs.event_driven = cfg.rate_hz == 0
            self.get_logger().info(f"observations: {self._mode()}")

    @property
    def sync(self):
        """The inputs' :class:`ate_ros.core.deploy.FreshestSync` (refusal counts)."""
        return self.inputs.sync

    def _mode(self) -> str:
        if self.config.exact_sync:
            return "one per stamp (exact sync)"
        return "every frame" if self.config.rate_hz == 0 else f"{self.config.rate_hz} Hz"

    def _publish(self) -> None:
        snap = self.inputs.snapshot()
        if snap is None:
            return
        images = self.inputs.images(snap)
        if images is None:
            return
        msg = conv.observation_to_msg(images, self.embodiment.joint_names, snap.q,
                                      conv.sec_to_time(snap.stamp), snap.instruction,
                                      self.embodiment.base_frame)
        if publish_unless_shutdown(self, self.pub, msg):  # nothing once Ctrl-C shut it down
            self.published += 1

    def _diagnose(self) -> dict:
        inputs = self.inputs
        if inputs.bad_inputs and not self.published:
            self.diagnostics.status(ERROR, f"malformed inputs: {inputs.last_refusal}")
        elif inputs.last_refusal:
            self.diagnostics.status(WARN, inputs.last_refusal)
        else:
            self.diagnostics.status(OK, "publishing" if self.published else "waiting")
        # A refusal is reported once; the next period shows whether it persists.
        inputs.last_refusal = ""
        return {"observations_published": self.published, **inputs.diagnostics()}


def main(args: list[str] | None = None) -> int:
    # All callbacks share one mutually exclusive group: a single thread loses nothing.
    return spin_node(PerceptionNode, args, single_threaded=True)


if __name__ == "__main__":
    sys.exit(main())
