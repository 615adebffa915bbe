"""ROS-free logic and configuration of the deployment nodes (perception, policy, sim robot).

The nodes in ``ate_ros/nodes`` are thin rclpy wrappers: their parameters are declared from the
dataclasses below (help text and ranges in field metadata), and the logic that can be tested
without ROS lives here:

- :func:`prepare_image`: crop + resize a camera image to the embodiment's size.
- :class:`FreshestSync`: keeps the newest sample of every input and decides whether a
  synchronised, fresh observation can be formed (``max_age``), counting refusals.
- :class:`TrajectoryFollower`: joint_trajectory_controller's topic semantics (a new trajectory
  replaces the future part of the old one, a future start stamp defers it), linear interpolation.
- :class:`LatencyStats`: bounded latency record with percentiles.
- :func:`builtin_policy`: small policies with no weights (``hold``, ``wave``) for bring-up,
  dry runs and tests of the graph.

All times are seconds on the caller's clock (node clock / sim time); nothing reads wall time.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.policy_io import PolicyObservation

logger = logging.getLogger(__name__)

DEFAULT_CONTROLLER = "arm_controller"
"""Controller name: commands go to ``<controller>/joint_trajectory`` (ros2_control convention)."""

# Relative topic names shared by the nodes (namespaces and remapping apply).
JOINT_STATES = "joint_states"
OBSERVATION = "observation"
ACTION_CHUNK = "action_chunk"
INSTRUCTION = "instruction"
TASK_SUCCESS = "task_success"
PREDICTED_CHUNKS = "~/predicted_chunks"
RUN_POLICY = "run_policy"

OBSERVATION_SOURCES = ("topic", "sensors")
"""policy_node's ``observation_source`` values."""


def _f(default, help: str, range=None, read_only: bool = False,  # noqa: A002
       choices=None):
    """A dataclass field with the metadata ``ate_ros.ros.params`` turns into a descriptor."""
    meta = {"help": help, "read_only": read_only}
    if range is not None:
        meta["min"], meta["max"] = range
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------------
# Node configurations
# ------------------------------------------------------------------------------------------------
@dataclass
class SensorInputsConfig:
    """How camera frames and joint states become one observation: the inputs of
    ``perception_node``, and of ``policy_node`` with ``observation_source: sensors``."""

    max_age: float = _f(0.5, "inputs older than this (s, node clock) are refused", (0.0, 60.0))
    max_skew: float = _f(0.2, "largest stamp difference between the inputs of one observation (s)",
                         (0.0, 60.0))
    compressed: bool = _f(False, "subscribe to <camera topic>/compressed (CompressedImage) "
                          "instead of raw images", read_only=True)
    crop: str = _f("center", "how images are fitted to the embodiment size: center (crop to the "
                   "aspect ratio, then resize) or stretch (resize only)",
                   choices=("center", "stretch"))
    instruction: str = _f("", "instruction used until one arrives on the instruction topic")
    exact_sync: bool = _f(False, "one observation per new stamp of the first camera, as soon as "
                          "every input has a sample with exactly that stamp (lock-step "
                          "simulation: deterministic bundles); rate_hz is then ignored",
                          read_only=True)

    def __post_init__(self) -> None:
        if self.crop not in ("center", "stretch"):
            raise ValueError(f"crop must be 'center' or 'stretch', got {self.crop!r}")
        if self.max_age < 0 or self.max_skew < 0:
            raise ValueError("max_age and max_skew must be >= 0")


@dataclass
class PerceptionConfig(SensorInputsConfig):
    """Parameters of ``perception_node``: its inputs, plus the embodiment and the rate."""

    embodiment: str = _f("", "embodiment name (config/embodiments/<name>.yaml) or YAML path",
                         read_only=True)
    rate_hz: float = _f(5.0, "Observation publish rate (the policy rate); 0 publishes on every "
                        "new frame of the first camera", (0.0, 1000.0))
    diagnostics_period: float = _f(1.0, "seconds between /diagnostics messages", (0.05, 60.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate_hz < 0:
            raise ValueError("rate_hz must be >= 0")


@dataclass
class PolicyNodeConfig:
    """Parameters of ``policy_node``."""

    embodiment: str = _f("", "embodiment name or YAML path", read_only=True)
    policy: str = _f("wave", "policy checkpoint directory, or a built-in: hold, wave (expert: "
                     "the scripted simulation oracle, `ate-ros run --sim` only)", read_only=True)
    vae: str = _f("", "stage-2 alignment directory for the OOD monitor ('' = none, OOD is NaN)",
                  read_only=True)
    device: str = _f("cpu", "torch device of the policy (cpu, cuda, cuda:1)", read_only=True)
    observation_source: str = _f(
        "topic", "where observations come from: topic (the observation topic, published by "
        "perception_node) or sensors (this node subscribes to the embodiment's cameras and "
        "joint_states itself, set up by sensors.*: no perception_node, one DDS hop and one image "
        "copy less)", read_only=True, choices=OBSERVATION_SOURCES)
    sensors: SensorInputsConfig = field(default_factory=SensorInputsConfig)
    rate_hz: float = _f(0.0, "largest inference rate; 0 = on every new observation",
                        (0.0, 1000.0))
    num_steps: int = _f(0, "denoising / integration steps (0 = the policy's default)", (0, 1000))
    seed: int = _f(-1, "sampling seed (-1 = random each chunk)", (-1, 2**31 - 1))
    num_samples: int = _f(0, "extra chunks sampled with other seeds, for visualisation only",
                          (0, 16))
    max_obs_age: float = _f(0.5, "observations older than this (s, node clock) are refused",
                            (0.0, 60.0))
    require_goal: bool = _f(False, "publish chunks only while a RunPolicy goal is running")
    hold_on_stop: bool = _f(True, "on cancel/deactivate publish a stop request (a chunk "
                            "without points): the executor brakes and holds where the arm is")
    publish_markers: bool = _f(True, "publish the MarkerArray on ~/predicted_chunks")
    kinematics: str = _f("auto", "forward kinematics for markers: auto, urdf, sim, joints",
                         choices=("auto", "urdf", "sim", "joints"))
    viz_history: int = _f(5, "older chunks kept in the markers (fading)", (0, 50))
    warmup: bool = _f(True, "run one dummy inference in on_activate")
    torch_threads: int = _f(1, "torch intra-op threads for CPU inference (0 = torch's default, "
                            "one per core). More than 1 competes with the executor, DDS and "
                            "simulation threads of the process: a small model runs several "
                            "times slower", (0, 256), read_only=True)
    diagnostics_period: float = _f(1.0, "seconds between /diagnostics messages", (0.05, 60.0))

    def __post_init__(self) -> None:
        if self.observation_source not in OBSERVATION_SOURCES:
            raise ValueError(f"observation_source must be one of {OBSERVATION_SOURCES}, got "
                             f"{self.observation_source!r}")
        if self.kinematics not in ("auto", "urdf", "sim", "joints"):
            raise ValueError(f"kinematics must be auto, urdf, sim or joints, got "
                             f"{self.kinematics!r}")


@dataclass
class SimRobotConfig:
    """Parameters of ``sim_robot_node``."""

    embodiment: str = _f("", "embodiment name or YAML path ('' = the adaptation embodiment)",
                         read_only=True)
    task: str = _f("", "simulation task ('' = the default task)", read_only=True)
    seed: int = _f(0, "episode seed (32 bits, like the evaluation seeds)", (0, 2**32 - 1),
                   read_only=True)
    real_time_factor: float = _f(1.0, "sim seconds per wall second (>1 runs faster)",
                                 (0.01, 100.0))
    tick_period: float = _f(0.01, "wall seconds between simulation updates", (0.001, 1.0))
    joint_state_rate_hz: float = _f(50.0, "joint_states rate (sim time)", (1.0, 1000.0))
    camera_rate_hz: float = _f(10.0, "camera image rate (sim time)", (0.1, 120.0))
    controller: str = _f(DEFAULT_CONTROLLER, "commands on <controller>/joint_trajectory",
                         read_only=True)
    publish_clock: bool = _f(True, "publish /clock (sim time) for use_sim_time nodes",
                             read_only=True)
    max_duration: float = _f(0.0, "stop the episode after this much sim time (0 = never)",
                             (0.0, 1e6))
    start_paused: bool = _f(False, "wait for start_episode() / a message on ~/start before the "
                            "episode starts (nothing is published until then), so a slow "
                            "policy load does not eat the episode", read_only=True)
    lockstep: bool = _f(False, "lock-step: each control period, publish joint_states (+ images "
                        "when an observation is due) stamped with the tick, wait for the "
                        "policy's chunk and the executor's command for that tick, then advance "
                        "one control period with the command (reproduces the direct evaluation "
                        "loop); the episode ends when the task is done", read_only=True)
    lockstep_timeout: float = _f(2.0, "lock-step: wall seconds to wait for a chunk or a command "
                                 "before advancing anyway (holding the last target)",
                                 (0.001, 600.0))
    publish_instruction: bool = _f(True, "publish the task instruction on the latched "
                                   "`instruction` topic at episode start", read_only=True)
    publish_robot_description: bool = _f(
        True, "publish the arm's URDF (generated from the MuJoCo model) once on the latched "
        "`robot_description` topic, for RViz's RobotModel display", read_only=True)


# ------------------------------------------------------------------------------------------------
# Perception
# ------------------------------------------------------------------------------------------------
def prepare_image(img: np.ndarray, width: int, height: int, crop: str = "center") -> np.ndarray:
    """Fit an (H, W, 3) uint8 image to ``width`` x ``height``.

    ``center`` crops the largest centred region with the target aspect ratio first (no
    distortion); ``stretch`` only resizes. Already-sized images are returned unchanged.
    """
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    if crop == "center":
        target = width / height
        if w / h > target:  # too wide: crop columns
            cw = max(1, round(h * target))
            x0 = (w - cw) // 2
            img = img[:, x0:x0 + cw]
        elif w / h < target:  # too tall: crop rows
            ch = max(1, round(w / target))
            y0 = (h - ch) // 2
            img = img[y0:y0 + ch]
    shrink = img.shape[1] > width
    return cv2.resize(np.ascontiguousarray(img), (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass
class _Sample:
    stamp: float
    value: object


class FreshestSync:
    """Newest sample per input; forms an observation only when every input is fresh.

    ``check(now)`` returns ``(ok, reason)``: not ok when an input never arrived, is older than
    ``max_age`` or when the inputs are more than ``max_skew`` apart. Refusals are counted per
    reason (``refused``), for /diagnostics.
    """

    def __init__(self, inputs: list[str], max_age: float, max_skew: float) -> None:
        self.inputs = list(inputs)
        self.max_age = max_age
        self.max_skew = max_skew
        self._latest: dict[str, _Sample] = {}
        self.refused: dict[str, int] = {}
        self.received: dict[str, int] = dict.fromkeys(self.inputs, 0)

    def put(self, name: str, stamp: float, value: object) -> None:
        self.received[name] = self.received.get(name, 0) + 1
        old = self._latest.get(name)
        if old is None or stamp >= old.stamp:
            self._latest[name] = _Sample(stamp, value)

    def offer(self, name: str, stamp: float, value: object, now: float) -> bool:
        """:meth:`put` unless the sample is already older than ``max_age`` (counted, False)."""
        if now - stamp > self.max_age:
            self.received[name] = self.received.get(name, 0) + 1
            self._refuse("stale", f"{name} arrived {now - stamp:.3f}s old")
            return False
        self.put(name, stamp, value)
        return True

    def get(self, name: str):
        s = self._latest.get(name)
        return None if s is None else s.value

    def stamp(self, name: str) -> float | None:
        s = self._latest.get(name)
        return None if s is None else s.stamp

    def ages(self, now: float) -> dict[str, float]:
        return {n: now - s.stamp for n, s in self._latest.items()}

    def check(self, now: float) -> tuple[bool, str]:
        missing = [n for n in self.inputs if n not in self._latest]
        if missing:
            return self._refuse("missing", f"no data yet on {missing}")
        stamps = {n: self._latest[n].stamp for n in self.inputs}
        stale = {n: round(now - s, 3) for n, s in stamps.items() if now - s > self.max_age}
        if stale:
            return self._refuse("stale", f"inputs older than max_age={self.max_age}s: {stale}")
        skew = max(stamps.values()) - min(stamps.values())
        if skew > self.max_skew:
            return self._refuse("skew", f"inputs {skew:.3f}s apart (max_skew={self.max_skew})")
        return True, ""

    def newest_stamp(self) -> float:
        return max(self._latest[n].stamp for n in self.inputs)

    def _refuse(self, kind: str, reason: str) -> tuple[bool, str]:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        return False, reason


# ------------------------------------------------------------------------------------------------
# Trajectory following (joint_trajectory_controller topic interface)
# ------------------------------------------------------------------------------------------------
class TrajectoryFollower:
    """Piecewise-linear joint trajectory with joint_trajectory_controller replacement semantics.

    ``set_trajectory(start, times, positions, now)``: points are at ``start + times``; ``start``
    of 0 (an unset header stamp) means ``now``. The old trajectory keeps running until the new
    one starts; from there the path goes from the old trajectory's value at the start to the new
    points; points already in the past are dropped. After the last point the position is held.
    """

    def __init__(self, q0: np.ndarray, now: float = 0.0) -> None:
        q0 = np.asarray(q0, dtype=np.float64)
        self._t = np.array([now])
        self._q = q0[None].copy()
        self.received = 0
        self.dropped_points = 0

    def sample(self, t: float) -> np.ndarray:
        """Commanded position at time ``t``."""
        ts, qs = self._t, self._q
        if t <= ts[0]:
            return qs[0].copy()
        if t >= ts[-1]:
            return qs[-1].copy()
        i = int(np.searchsorted(ts, t, side="right")) - 1
        f = (t - ts[i]) / max(ts[i + 1] - ts[i], 1e-12)
        return qs[i] * (1 - f) + qs[i + 1] * f

    def set_trajectory(self, start: float, times: np.ndarray, positions: np.ndarray,
                       now: float) -> None:
        times = np.asarray(times, dtype=np.float64)
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[0] != times.shape[0]:
            raise ValueError(f"{times.shape[0]} times but positions of shape {positions.shape}")
        if positions.shape[1] != self._q.shape[1]:
            raise ValueError(f"trajectory has {positions.shape[1]} joints, expected "
                             f"{self._q.shape[1]}")
        self.received += 1
        t0 = now if start <= 0 else max(start, now)
        abs_t = (start if start > 0 else now) + times
        keep_new = abs_t > t0
        self.dropped_points += int((~keep_new).sum())
        anchor = self.sample(t0)
        old = self._t < t0
        old &= self._t > now  # only the still-future part of the old trajectory survives
        ts = [np.array([now]), self._t[old], np.array([t0]), abs_t[keep_new]]
        qs = [self.sample(now)[None], self._q[old], anchor[None], positions[keep_new]]
        t_all, q_all = np.concatenate(ts), np.concatenate(qs)
        # Drop duplicated times (now == t0), keeping the later entry.
        keep = np.append(np.diff(t_all) > 1e-9, True)
        self._t, self._q = t_all[keep], q_all[keep]

    def hold(self, now: float) -> None:
        """Stop: hold the currently commanded position."""
        q = self.sample(now)
        self._t, self._q = np.array([now]), q[None]

    @property
    def end_time(self) -> float:
        return float(self._t[-1])


# ------------------------------------------------------------------------------------------------
# Latency statistics
# ------------------------------------------------------------------------------------------------
class LatencyStats:
    """A bounded window of latencies (s) with percentiles."""

    def __init__(self, maxlen: int = 10000) -> None:
        self._v: deque[float] = deque(maxlen=maxlen)
        self.count = 0

    def add(self, seconds: float) -> None:
        if math.isfinite(seconds):
            self._v.append(float(seconds))
            self.count += 1

    def percentile(self, p: float) -> float:
        return float(np.percentile(np.fromiter(self._v, float), p)) if self._v else float("nan")

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "p50": self.percentile(50), "p99": self.percentile(99),
                "max": max(self._v) if self._v else float("nan")}


# ------------------------------------------------------------------------------------------------
# Built-in policies (no weights)
# ------------------------------------------------------------------------------------------------
class HoldPolicy:
    """Holds the observed position (every chunk point = current qpos). For bring-up."""

    def __init__(self, embodiment: Embodiment, chunk_size: int = 16) -> None:
        self.embodiment = embodiment
        self.chunk_size = chunk_size
        self.camera_names = [c.name for c in embodiment.cameras]

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        return np.repeat(obs.qpos[None].astype(np.float32), self.chunk_size, axis=0)


class WavePolicy(HoldPolicy):
    """Moves every joint sinusoidally around the middle of its range (time from ``obs.stamp``).

    Predictable, visibly moving, deterministic in the observation time, so it exercises the
    whole graph (perception -> policy -> executor -> robot) without a trained model. ``seed``
    shifts the phase, which makes extra samples visibly different.
    """

    def __init__(self, embodiment: Embodiment, chunk_size: int = 16, amplitude: float = 0.25,
                 period: float = 4.0) -> None:
        super().__init__(embodiment, chunk_size)
        self.amplitude = amplitude
        self.period = period

    def targets(self, t: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(N,) times -> (N, D) joint targets."""
        emb = self.embodiment
        mid = (emb.lower + emb.upper) / 2
        amp = np.minimum(self.amplitude, (emb.upper - emb.lower) / 4)
        phase = 0.0 if seed is None else 0.3 * (seed % 7)
        k = np.arange(emb.dof)
        return mid + amp * np.sin(2 * np.pi * np.asarray(t)[:, None] / self.period + phase
                                  + 0.5 * k)

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        dt = self.embodiment.control_period
        t = obs.stamp + dt * np.arange(1, self.chunk_size + 1)
        out = np.zeros((self.chunk_size, UNIFIED_DIM), dtype=np.float32)
        out[:, self.embodiment.slots] = self.targets(t, seed)
        return out


BUILTIN_POLICIES = {"hold": HoldPolicy, "wave": WavePolicy}


def builtin_policy(name: str, embodiment: Embodiment):
    """A built-in policy by name, or None when ``name`` is not one."""
    cls = BUILTIN_POLICIES.get(name)
    return None if cls is None else cls(embodiment)
