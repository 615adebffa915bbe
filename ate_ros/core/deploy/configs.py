"""Configuration of the deployment nodes and the topic names they share.

Each node declares its ROS parameters from one of these dataclasses (help text, ranges and
read-only flags in field metadata, turned into descriptors by :mod:`ate_ros.ros.params`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.config_fields import validate_fields
from ate_ros.core.execution.config import CHUNKING_MODES
from ate_ros.core.steer.rtc.configuration_rtc import RTCConfig

DEFAULT_CONTROLLER = "arm_controller"
"""Controller name: commands go to ``<controller>/joint_trajectory`` (ros2_control convention)."""

# Relative topic names shared by the nodes (namespaces and remapping apply).
JOINT_STATES = "joint_states"
ENV_STATE = "environment_state"
"""``ate_ros/EnvironmentState``: the scene's low-dimensional state, for ``low_dim`` policies."""
OBSERVATION = "observation"
ACTION_CHUNK = "action_chunk"
INSTRUCTION = "instruction"
TASK_SUCCESS = "task_success"
PREDICTED_CHUNKS = "~/predicted_chunks"
RUN_POLICY = "run_policy"

OBSERVATION_SOURCES = ("topic", "sensors")
"""policy_node's ``observation_source`` values."""


def chunking_parameters(chunking: str) -> dict[str, dict[str, str]]:
    """Node parameters one ``chunking`` choice sets (``ate-ros run --chunking``, the launch
    files' ``chunking:=``): policy_node's ``chunking`` and executor_node's ``execution.blend``
    (the same name; ``sync`` uses ``replace``: a chunk only comes once the plan has ended)."""
    if chunking not in CHUNKING_MODES:
        raise ValueError(f"chunking must be one of {CHUNKING_MODES}, got {chunking!r}")
    return {"policy_node": {"chunking": chunking},
            "executor_node": {"execution.blend": "replace" if chunking == "sync" else chunking}}


def _f(default, help: str, range=None, read_only: bool = False,  # noqa: A002
       choices=None, min_exclusive: bool = False):
    """A dataclass field with the metadata ``ate_ros.ros.params`` turns into a descriptor and
    :func:`ate_ros.core.config_fields.validate_fields` enforces (``range`` is ``(min, max)``,
    inclusive unless ``min_exclusive``)."""
    meta = {"help": help, "read_only": read_only}
    if range is not None:
        meta["min"], meta["max"] = range
        if min_exclusive:
            meta["min_exclusive"] = True
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass
class SensorInputsConfig:
    """How camera frames and joint states become one observation: the inputs of
    ``perception_node``, and of ``policy_node`` with ``observation_source: sensors``."""

    max_age: float = _f(0.5, "inputs older than this (s, node clock) are refused", (0.0, 60.0),
                        min_exclusive=True)
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
        validate_fields(self)


@dataclass
class PerceptionConfig(SensorInputsConfig):
    """Parameters of ``perception_node``: its inputs, plus the embodiment and the rate."""

    embodiment: str = _f("", "embodiment name (config/embodiments/<name>.yaml) or YAML path",
                         read_only=True)
    rate_hz: float = _f(5.0, "Observation publish rate (the policy rate); 0 publishes on every "
                        "new frame of the first camera", (0.0, 1000.0))
    env_state_dim: int = _f(0, "width of the environment_state the policy reads (its "
                            "env_state_dim): subscribe to environment_state, require a fresh one "
                            "of this width in every observation and carry it in the "
                            "Observation; 0 = none", (0, 4096), read_only=True)
    diagnostics_period: float = _f(1.0, "seconds between /diagnostics messages", (0.05, 60.0))


@dataclass
class PolicyNodeConfig:
    """Parameters of ``policy_node``."""

    embodiment: str = _f("", "embodiment name or YAML path", read_only=True)
    policy: str = _f("wave", "policy checkpoint directory, lerobot:DIR (a LeRobot checkpoint: "
                     "its own processors, actions on the embodiment's joints), or a built-in: "
                     "hold, wave (expert: the scripted simulation oracle, `ate-ros run --sim` "
                     "only)", read_only=True)
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
                            (0.0, 60.0), min_exclusive=True)
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
    chunking: str = _f(
        "crossfade", "when inference runs: rtc (real-time chunking: the next inference starts "
        "when the plan has the latency estimate + rtc_margin points left, the policy inpaints "
        "the points that execute meanwhile and the chunk is stamped with the index where it "
        "takes over; the executor needs execution.blend rtc), sync (only once the plan is "
        "exhausted: the arm holds while the model runs), replace / crossfade / ensemble (on "
        "every admitted observation; the executor's blend joins the chunks)",
        choices=CHUNKING_MODES)
    latency_quantile: float = _f(0.95, "rtc: quantile of the recent inference latencies (the "
                                 "observation stamp to the chunk) used as its delay d, in "
                                 "control periods", (0.5, 1.0))
    rtc_margin: int = _f(3, "rtc: extra planned points left when the next inference starts "
                         "(headroom for latency jitter and for the control periods between "
                         "observations: the trigger is checked when one arrives)", (0, 1000))
    rtc: RTCConfig = field(default_factory=RTCConfig)

    def __post_init__(self) -> None:
        if isinstance(self.rtc, dict):
            self.rtc = RTCConfig(**self.rtc)
        if isinstance(self.sensors, dict):
            self.sensors = SensorInputsConfig(**self.sensors)
        validate_fields(self)


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

    def __post_init__(self) -> None:
        validate_fields(self)
