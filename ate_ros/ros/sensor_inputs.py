"""Camera frames + joint_states + instruction -> the freshest synchronised observation.

The inputs of ``perception_node`` (which publishes the bundle as ``ate_ros/Observation``) and of
``policy_node`` with ``observation_source: sensors`` (which hands it to its model directly, with
no Observation message in between). Settings: :class:`ate_ros.core.deploy.SensorInputsConfig`.

Subscribes (relative names, SensorDataQoS depth 1): ``<camera topic>`` (sensor_msgs/Image) or
``<camera topic>/compressed`` (CompressedImage) for each camera of the embodiment,
``joint_states``, ``environment_state`` (ate_ros/EnvironmentState, only for a policy that reads
one: ``env_state_dim > 0``; it is then an input like joint_states, with the same age and skew
rules, so an observation whose environment state is missing or stale is refused), and
``instruction`` (std_msgs/String, transient-local: the last one is kept).

Work is split so that an owner can keep its executor thread short: :meth:`SensorInputs.snapshot`
(cheap, under a lock: the newest raw frames, joint positions and stamp, or a refusal) and
:meth:`SensorInputs.images` (decoding, cropping and resizing, wherever the owner likes).
Frames that never become part of an observation are never decoded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from ate_ros.core.deploy import (
    ENV_STATE,
    INSTRUCTION,
    JOINT_STATES,
    FreshestSync,
    SensorInputsConfig,
    prepare_image,
)
from ate_ros.core.embodiment import Embodiment
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.ros import conversions as conv
from ate_ros.ros.qos import LATCHED_QOS, SENSOR_QOS


@dataclass
class SensorSnapshot:
    """The newest synchronised inputs, not decoded yet."""

    frames: dict[str, Any]  # camera name -> sensor_msgs/Image or CompressedImage
    q: np.ndarray  # (D,) joint positions in the embodiment's order
    stamp: float  # the newest input's stamp (s)
    instruction: str
    env_state: np.ndarray | None = None  # (E,) float32, when the policy reads one
    env_state_names: tuple[str, ...] = ()


class SensorInputs:
    """Subscriptions of ``node`` to an embodiment's cameras, joint_states and instruction.

    Args:
        node: Owns the subscriptions.
        embodiment: Names the cameras (topics, sizes) and the joints.
        config: Ages, skew, crop, compressed, exact sync, default instruction.
        callback_group: Group of every subscription.
        on_ready: Called (on the executor thread, lock released) when a new observation can be
            formed: on every new frame of the first camera (of joint_states, for an embodiment
            without cameras) when ``event_driven``, or, with ``config.exact_sync``, once per
            first-camera stamp that every input has reached.
        event_driven: Whether new first-camera frames call ``on_ready`` (otherwise the owner
            polls :meth:`snapshot`, e.g. on a timer).
        owner: Whose clock (sim time with use_sim_time) ages the inputs, whose logger reports
            refusals and whose remappings resolve the topic names; default ``node``
            (policy_node subscribes on a helper node:
            :class:`ate_ros.ros.inference_thread.InferenceThread`).
        env_state_dim: Width of the environment state the policy reads (its
            ``env_state_dim``); > 0 subscribes to ``environment_state`` and requires a fresh
            state of that width in every observation, 0 ignores the topic.
    """

    def __init__(self, node: Node, embodiment: Embodiment, config: SensorInputsConfig, *,
                 callback_group: Any = None, on_ready: Callable[[], None] | None = None,
                 event_driven: bool = True, owner: Node | None = None,
                 env_state_dim: int = 0) -> None:
        self.node = node
        self.owner = owner if owner is not None else node
        self._clock = self.owner.get_clock()
        self._logger = self.owner.get_logger()
        self.embodiment = embodiment
        self.config = config
        self.cameras = list(embodiment.cameras)
        self.instruction = config.instruction
        self.env_state_dim = int(env_state_dim)
        # The first state's names are the layout; one with other names is refused as malformed
        # (a reordered layout would otherwise be fed to the policy silently).
        self.env_state_names: tuple[str, ...] | None = None
        inputs = [c.name for c in self.cameras] + [JOINT_STATES]
        self.sync = FreshestSync(inputs + ([ENV_STATE] if self.env_state_dim else []),
                                 config.max_age, config.max_skew)
        self.last_refusal = ""
        self.bad_inputs = 0
        self.images_done: dict[str, int] = {}
        """Frames per camera whose callback has finished (taken, refused or published)."""
        self.last_image_done: dict[str, float] = {}
        """Per camera, the stamp (s) of the latest frame whose callback has finished: the
        depth-1 sensor queue replaces frames that arrive while one is handled, so a count of
        frames sent cannot tell when the last one is through."""
        self._on_ready = on_ready
        self.event_driven = event_driven
        self._lock = threading.Lock()
        self._exact_stamp = -math.inf  # exact_sync: the last stamp handed on
        # On another node than the owner, subscribe to the owner's resolved (absolute) names.
        topic = ((lambda name: name) if self.owner is node else self.owner.resolve_topic_name)
        self._subs = []
        for i, cam in enumerate(self.cameras):
            def on_image(msg, name=cam.name, first=(i == 0)):
                self._on_image(name, msg, first)

            if config.compressed:
                self._subs.append(node.create_subscription(
                    CompressedImage, topic(cam.topic.rstrip("/") + "/compressed"), on_image,
                    SENSOR_QOS, callback_group=callback_group))
            else:
                self._subs.append(node.create_subscription(
                    Image, topic(cam.topic), on_image, SENSOR_QOS,
                    callback_group=callback_group))
        self._subs.append(node.create_subscription(JointState, topic(JOINT_STATES),
                                                   self._on_joints, SENSOR_QOS,
                                                   callback_group=callback_group))
        if self.env_state_dim:
            from ate_ros.msg import EnvironmentState

            self._subs.append(node.create_subscription(EnvironmentState, topic(ENV_STATE),
                                                       self._on_env_state, SENSOR_QOS,
                                                       callback_group=callback_group))
        self._subs.append(node.create_subscription(String, topic(INSTRUCTION),
                                                   self._on_instruction, LATCHED_QOS,
                                                   callback_group=callback_group))

    def reconfigure(self, config: SensorInputsConfig) -> None:
        """Apply run-time parameter changes: ages, skew, crop, and the default instruction when
        it changed (an instruction received on the topic stays until then)."""
        with self._lock:
            if config.instruction != self.config.instruction:
                self.instruction = config.instruction
            self.config = config
            self.sync.max_age, self.sync.max_skew = config.max_age, config.max_skew

    @property
    def topics(self) -> list[str]:
        return [s.topic_name for s in self._subs]

    def destroy(self) -> None:
        """Destroy the subscriptions (the owner's cleanup)."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []

    def _now(self) -> float:
        return self._clock.now().nanoseconds * 1e-9

    # ----- callbacks ----------------------------------------------------------------------
    def _on_image(self, camera: str, msg: Any, first: bool) -> None:
        try:
            self._handle_image(camera, msg, first)
        finally:
            # Counted once the frame's observation (if any) is out: a test waiting on this
            # count sees every effect of the frame, not a callback still running.
            with self._lock:
                self.images_done[camera] = self.images_done.get(camera, 0) + 1
                self.last_image_done[camera] = conv.time_to_sec(msg.header.stamp)

    def _handle_image(self, camera: str, msg: Any, first: bool) -> None:
        with self._lock:
            fresh = self.sync.offer(camera, conv.time_to_sec(msg.header.stamp), msg, self._now())
        if not fresh:
            self.last_refusal = f"{camera} image older than max_age={self.config.max_age}s"
            self._logger.warning(self.last_refusal, throttle_duration_sec=5.0)
        elif self.config.exact_sync:
            self._ready_if_exact()
        elif first and self.event_driven and self._on_ready is not None:
            self._on_ready()

    def _on_joints(self, msg: JointState) -> None:
        try:
            q = conv.joint_state_to_embodiment(msg, self.embodiment)
        except conv.ConversionError as exc:
            self._refuse_malformed("joint_states", exc)
            return
        if not self._offer(JOINT_STATES, "joint_states", msg, q):
            return
        if self.config.exact_sync:
            self._ready_if_exact()
        elif not self.cameras and self.event_driven and self._on_ready is not None:
            self._on_ready()  # a robot without cameras: joint states pace the observations

    def _on_env_state(self, msg: Any) -> None:
        try:
            names, values = conv.msg_to_env_state(msg, self.env_state_dim)
            if self.env_state_names is None:
                self.env_state_names = tuple(names)
            elif tuple(names) != self.env_state_names:
                raise conv.ConversionError(f"names {names} differ from the first state's "
                                           f"{list(self.env_state_names)}")
        except conv.ConversionError as exc:
            self._refuse_malformed(ENV_STATE, exc)
            return
        if self._offer(ENV_STATE, ENV_STATE, msg, values) and self.config.exact_sync:
            self._ready_if_exact()

    def _refuse_malformed(self, label: str, exc: Exception) -> None:
        self.bad_inputs += 1
        self.last_refusal = f"{label} ignored: {exc}"
        self._logger.warning(self.last_refusal, throttle_duration_sec=5.0)

    def _offer(self, key: str, label: str, msg: Any, value: Any) -> bool:
        """Offer a stamped input to the synchroniser; False (and the refusal noted) when it is
        older than ``max_age``."""
        with self._lock:
            fresh = self.sync.offer(key, conv.time_to_sec(msg.header.stamp), value,
                                    self._now())
        if not fresh:
            self.last_refusal = f"{label} older than max_age={self.config.max_age}s"
        return fresh

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self._logger.info(f"instruction: {msg.data!r}")

    def _ready_if_exact(self) -> None:
        """exact_sync: ``on_ready`` once per first-camera stamp that every input has reached."""
        if not self.cameras or self._on_ready is None:
            return
        with self._lock:
            stamp = self.sync.stamp(self.cameras[0].name)
            if stamp is None or stamp <= self._exact_stamp:
                return
            stamps = [self.sync.stamp(n) for n in self.sync.inputs]
            if any(s is None or abs(s - stamp) > 1e-9 for s in stamps):
                return  # another input of this stamp is still on its way
            self._exact_stamp = stamp
        self._on_ready()

    # ----- assembling ---------------------------------------------------------------------
    def snapshot(self, now: float | None = None) -> SensorSnapshot | None:
        """The newest synchronised inputs, or None (refused: stale, skewed or missing input;
        the reason is in :attr:`last_refusal`, logged and counted by reason)."""
        now = self._now() if now is None else now
        with self._lock:
            ok, reason = self.sync.check(now)
            if not ok:
                self.last_refusal = reason
                self._logger.warning(f"no observation: {reason}",
                                               throttle_duration_sec=5.0)
                return None
            frames = {c.name: self.sync.get(c.name) for c in self.cameras}
            q = np.asarray(self.sync.get(JOINT_STATES), dtype=np.float64)
            env = self.sync.get(ENV_STATE) if self.env_state_dim else None
            stamp = self.sync.newest_stamp()
        return SensorSnapshot(frames, q, stamp, self.instruction, env,
                              self.env_state_names or ())

    def images(self, snap: SensorSnapshot) -> dict[str, np.ndarray] | None:
        """Decode, crop and resize the frames of ``snap`` to the embodiment's camera sizes, or
        None when one cannot be decoded (counted in :attr:`bad_inputs`, reason logged)."""
        out = {}
        for cam in self.cameras:
            frame = snap.frames[cam.name]
            try:
                img = (conv.compressed_to_numpy(frame) if self.config.compressed
                       else conv.image_to_numpy(frame))
            except conv.ConversionError as exc:
                self.bad_inputs += 1
                self.last_refusal = f"camera {cam.name}: {exc}"
                self._logger.warning(self.last_refusal, throttle_duration_sec=5.0)
                return None
            out[cam.name] = prepare_image(img, cam.width, cam.height, self.config.crop)
        return out

    def policy_observation(self, snap: SensorSnapshot) -> PolicyObservation | None:
        """The model's input from ``snap`` (frames decoded here), or None when a frame cannot be
        decoded (see :meth:`images`)."""
        images = self.images(snap)
        if images is None:
            return None
        return conv.arrays_to_policy_observation(images, snap.q, snap.instruction, snap.stamp,
                                                 self.embodiment, env_state=snap.env_state)

    def diagnostics(self, now: float | None = None) -> dict[str, Any]:
        """Per-input counts and ages, refusals by reason, malformed inputs."""
        now = self._now() if now is None else now
        with self._lock:
            ages = self.sync.ages(now)
            refused = dict(self.sync.refused)
            received = dict(self.sync.received)
        out: dict[str, Any] = {"malformed_inputs": self.bad_inputs}
        out.update({f"{n}_received": k for n, k in received.items()})
        out.update({f"{n}_age_s": a for n, a in ages.items()})
        out.update({f"refused_{k}": n for k, n in refused.items()})
        return out
