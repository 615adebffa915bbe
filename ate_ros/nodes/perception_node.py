"""perception_node (lifecycle): cameras + joint_states -> ``ate_ros/Observation`` at the policy
rate.

Lifecycle:
    configure  loads the embodiment, subscribes to its inputs, creates the publisher.
    activate   starts publishing (the timer, or on every frame).
    deactivate stops publishing (inputs are still taken, so they are fresh on activation).
    cleanup    destroys the subscriptions and the publisher.

Subscribes (relative names, SensorDataQoS depth 1):
    ``<camera topic>`` (sensor_msgs/Image, from the embodiment's camera list) or
    ``<camera topic>/compressed`` (sensor_msgs/CompressedImage) when ``compressed`` is true,
    ``joint_states`` (sensor_msgs/JointState),
    ``environment_state`` (ate_ros/EnvironmentState) when ``env_state_dim`` > 0 (a low-dim
    policy downstream): then required, fresh and of that width, in every observation,
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
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from ate_ros.core.deploy import OBSERVATION, PerceptionConfig
from ate_ros.core.embodiment import load_embodiment
from ate_ros.msg import Observation
from ate_ros.ros import conversions as conv
from ate_ros.ros.diagnostics import ERROR, OK, WARN, NodeDiagnostics
from ate_ros.ros.inference_thread import InferenceThread
from ate_ros.ros.lifecycle import ReleasingLifecycleNode
from ate_ros.ros.params import DataclassParameters
from ate_ros.ros.qos import COMMAND_QOS
from ate_ros.ros.sensor_inputs import SensorInputs
from ate_ros.ros.spin import publish_unless_shutdown, spin_node


class PerceptionNode(ReleasingLifecycleNode):
    """Builds Observations from the newest camera frames and joint states."""

    def __init__(self, config: PerceptionConfig | None = None, *,
                 node_name: str = "perception_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = DataclassParameters(self, PerceptionConfig, defaults=config,
                                          on_change=self._reconfigure)
        self.config = self.params.config
        self.embodiment = None
        self.inputs: SensorInputs | None = None
        # Spins the input subscriptions in a thread of their own (configure..cleanup).
        self._input_thread: InferenceThread | None = None
        self.pub = None
        self.timer = None
        self.published = 0
        self._active = False
        self._group = MutuallyExclusiveCallbackGroup()
        self.diagnostics = NodeDiagnostics(self, "perception",
                                           period=self.config.diagnostics_period)
        self.diagnostics.add_provider(self._diagnose)

    # ----- lifecycle ----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        try:
            self.embodiment = load_embodiment(cfg.embodiment)
        except Exception as exc:  # noqa: BLE001 - any load failure is a failed transition
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        # The inputs live on a helper node spun by a thread of their own: a frame reaches its
        # callback without passing the wait set of every entity this node (and, in one
        # process, the whole graph) has, and an Observation goes out from that thread.
        self._input_thread = InferenceThread(self, thread_name="perception_inputs")
        self.inputs = SensorInputs(self._input_thread.node, self.embodiment, cfg,
                                   on_ready=self._publish, event_driven=cfg.rate_hz == 0,
                                   owner=self, env_state_dim=cfg.env_state_dim)
        self.pub = self.create_lifecycle_publisher(Observation, OBSERVATION, COMMAND_QOS)
        self._input_thread.start()
        self.get_logger().info(
            f"configured: perception for {self.embodiment.name}: cameras "
            f"{[c.topic for c in self.embodiment.cameras]}, joint_states, {self._mode()}, "
            f"max_age {cfg.max_age}s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)
        self._active = True
        self._start_timer()
        self.get_logger().info("activated")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_timer()
        self.get_logger().info("deactivated: no observations")
        return super().on_deactivate(state)

    def _halt(self) -> None:
        self._active = False

    def _release(self) -> None:
        self._stop_timer()
        if self._input_thread is not None:
            self._input_thread.stop()
        if self.inputs is not None:
            self.inputs.destroy()
            self.inputs = None
        if self._input_thread is not None:
            self._input_thread.destroy()
            self._input_thread = None
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def destroy_node(self) -> None:
        """Stop the input thread and destroy its helper node (rclpy would leave it in the
        graph), then the rest of the node."""
        if self._input_thread is not None:
            self._input_thread.destroy()
            self._input_thread = None
        super().destroy_node()

    def _start_timer(self) -> None:
        cfg = self.config
        if self._active and cfg.rate_hz > 0 and not cfg.exact_sync:
            self.timer = self.create_timer(1.0 / cfg.rate_hz, self._publish,
                                           callback_group=self._group)

    def _stop_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            self.destroy_timer(timer)

    def _reconfigure(self, cfg: PerceptionConfig) -> None:
        """A run-time parameter change: new ages/crop/instruction, and the rate (event-driven
        at 0)."""
        rate_changed = cfg.rate_hz != self.config.rate_hz
        self.config = cfg
        if self.inputs is None:
            return  # applied at configure
        self.inputs.reconfigure(cfg)
        if rate_changed:
            self._stop_timer()
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
        if not self._active or self.inputs is None:
            return
        snap = self.inputs.snapshot()
        if snap is None:
            return
        images = self.inputs.images(snap)
        if images is None:
            return
        msg = conv.observation_to_msg(images, self.embodiment.joint_names, snap.q,
                                      conv.sec_to_time(snap.stamp), snap.instruction,
                                      self.embodiment.base_frame, env_state=snap.env_state,
                                      env_state_names=snap.env_state_names)
        if publish_unless_shutdown(self, self.pub, msg):  # nothing once Ctrl-C shut it down
            self.published += 1

    def _diagnose(self) -> dict:
        inputs = self.inputs
        if inputs is None:
            self.diagnostics.status(OK, "unconfigured")
            return {"observations_published": self.published}
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
