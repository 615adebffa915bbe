"""Configuration of chunk execution (safety limits, blending, watchdog) and of the executor node.

Field metadata (``help``, ``min``, ``max``, ``read_only``, ``choices``) becomes the ROS parameter
descriptors through ``ate_ros.ros.params`` and is enforced by
:func:`ate_ros.core.config_fields.validate_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.config_fields import validate_fields

BLEND_MODES = ("replace", "crossfade", "ensemble", "rtc")
OUTPUT_MODES = ("auto", "topic", "action")
CHUNKING_MODES = ("sync", "replace", "crossfade", "ensemble", "rtc")
"""How inference and execution interleave: ``sync`` holds the arm while the policy runs; the
others run it beside execution and join its chunks with that blend (``rtc``: real-time
chunking, the sampler inpaints the committed prefix and the chunk takes over at its index)."""


@dataclass
class ExecutionConfig:
    """How action chunks are made safe and scheduled onto the control ticks."""

    blend: str = field(default="crossfade", metadata={
        "help": "How a new chunk joins the current plan: 'replace' (new chunk wins at once), "
                "'crossfade' (linear blend over crossfade_steps points) or 'ensemble' "
                "(ACT-style temporal ensembling of every prediction for a time, exponential "
                "weights) or 'rtc' (real-time chunking: the current plan runs up to the "
                "chunk's takeover index, the new chunk from there, without cross-fade)",
        "choices": BLEND_MODES})
    crossfade_steps: int = field(default=3, metadata={
        "help": "Points over which a new chunk is cross-faded into the current plan",
        "min": 0, "max": 1000})
    ensemble_decay: float = field(default=0.01, metadata={
        "help": "ACT temporal-ensembling coefficient m: the k-th prediction for a time (oldest "
                "k=0) gets weight exp(-m*k); 0 averages uniformly, larger favours old chunks",
        "min": 0.0, "max": 10.0})
    watchdog_timeout: float = field(default=2.0, metadata={
        "help": "Seconds without a newly accepted chunk after which the executor stops following "
                "the plan and holds position (decelerating within the acceleration limit); "
                "inf never does",
        "min": 1e-3})
    max_start_deviation: float | None = field(default=None, metadata={
        "help": "Largest |first chunk point - measured position| (per joint, rad or m) accepted; "
                "unset uses the embodiment's max_start_deviation", "min": 0.0})
    replan_steps: int = field(default=4, metadata={
        "help": "needs_chunk() turns true when fewer than this many planned future points remain",
        "min": 0, "max": 100000})
    latency_compensation: bool = field(default=True, metadata={
        "help": "Drop chunk points whose time (observation stamp + (i+1)*dt) is already past"})
    velocity_scale: float = field(default=1.0, metadata={
        "help": "Fraction of each joint's max_velocity the executor lets through (it can only "
                "make the embodiment's limit stricter)",
        "min": 0.0, "min_exclusive": True, "max": 1.0})
    acceleration_scale: float = field(default=1.0, metadata={
        "help": "Fraction of each joint's max_acceleration the executor lets through (it can only "
                "make the embodiment's limit stricter)",
        "min": 0.0, "min_exclusive": True, "max": 1.0})

    def __post_init__(self) -> None:
        validate_fields(self)


def receding_horizon_replan_steps(chunk_size: int, n_action_steps: int) -> int | None:
    """``replan_steps`` that execute ``n_action_steps`` points of each chunk before the next
    one is asked for; ``None`` when the policy leaves it to the executor (0)."""
    if n_action_steps <= 0:
        return None
    return max(int(chunk_size) - int(n_action_steps), 0)


@dataclass
class ExecutorNodeConfig:
    """Parameters of ``executor_node`` (``config/executor.yaml``)."""

    embodiment: str = field(default="sim_arm6", metadata={
        "help": "Embodiment name (config/embodiments/<name>.yaml) or path to its YAML",
        "read_only": True})
    controller: str = field(default="arm_controller", metadata={
        "help": "Controller name: trajectories go to <controller>/joint_trajectory (topic) or "
                "<controller>/follow_joint_trajectory (action)", "read_only": True})
    output: str = field(default="topic", metadata={
        "help": "'topic' streams JointTrajectory on <controller>/joint_trajectory; 'action' sends "
                "FollowJointTrajectory goals (needs control_msgs); 'auto' uses the action when "
                "control_msgs is importable", "choices": OUTPUT_MODES, "read_only": True})
    dry_run: bool = field(default=False, metadata={
        "help": "Publish what would be sent on ~/dry_run_trajectory instead of the controller"})
    stream_horizon: int = field(default=20, metadata={
        "help": "Largest number of planned points per streamed JointTrajectory",
        "min": 1, "max": 10000})
    state_timeout: float = field(default=0.5, metadata={
        "help": "Seconds after which joint_states count as stale: chunks are refused and the "
                "executor holds", "min": 1e-3, "max": 3600.0})
    max_tracking_error: float = field(default=0.1, metadata={
        "help": "Largest |command - measured position| (per joint, rad or m) beyond the lag "
                "allowed by tracking_lag, compared with the command due at the joint_states "
                "header.stamp. More means the robot does not follow (e-stop, a controller that "
                "failed or holds): the executor drops its plan and holds where the robot is, "
                "so no later command starts where the robot never got to. Unstamped "
                "joint_states are not checked; 0 disables (dry runs never check)",
        "min": 0.0, "max": 100.0})
    tracking_lag: float = field(default=0.2, metadata={
        "help": "Seconds the measured joints may trail the commands (controller delay): each "
                "joint may be as far behind as it moves at its velocity limit in this time, "
                "plus max_tracking_error", "min": 0.0, "max": 10.0})
    diagnostics_period: float = field(default=1.0, metadata={
        "help": "Seconds between /diagnostics messages", "min": 0.01, "max": 3600.0})
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def __post_init__(self) -> None:
        if isinstance(self.execution, dict):
            self.execution = ExecutionConfig(**self.execution)
        validate_fields(self)
        if not self.embodiment:
            raise ValueError("embodiment must name an embodiment or a YAML file")
        if not self.controller or self.controller.startswith("/") and len(self.controller) == 1:
            raise ValueError(f"controller {self.controller!r} is not a valid name")
