"""ROS-free logic and configuration of the deployment nodes (perception, policy, sim robot).

The nodes in ``ate_ros/nodes`` are thin rclpy wrappers: their parameters are declared from the
configuration dataclasses, and the logic that can be tested without ROS lives here, one module
per topic:

- :mod:`.configs`: ``SensorInputsConfig``, ``PerceptionConfig``, ``PolicyNodeConfig``,
  ``SimRobotConfig`` (help text and ranges in field metadata) and the topic names the nodes
  share.
- :mod:`.perception`: :func:`prepare_image` (crop + resize a camera image to the embodiment's
  size) and :class:`FreshestSync` (the newest sample of every input; whether a synchronised,
  fresh observation can be formed, counting refusals).
- :mod:`.trajectory`: :class:`TrajectoryFollower`, joint_trajectory_controller's topic
  semantics (a new trajectory replaces the future part of the old one, a future start stamp
  defers it), linear interpolation.
- :mod:`.latency`: :class:`LatencyStats`, a bounded latency record with percentiles.
- :mod:`.builtin_policies`: :func:`builtin_policy`, small policies with no weights (``hold``,
  ``wave``) for bring-up, dry runs and tests of the graph.

All times are seconds on the caller's clock (node clock / sim time); nothing reads wall time.
Every name is importable from ``ate_ros.core.deploy`` itself.
"""

from ate_ros.core.deploy.builtin_policies import (
    BUILTIN_POLICIES,
    HoldPolicy,
    WavePolicy,
    builtin_policy,
)
from ate_ros.core.deploy.configs import (
    ACTION_CHUNK,
    DEFAULT_CONTROLLER,
    ENV_STATE,
    INSTRUCTION,
    JOINT_STATES,
    OBSERVATION,
    OBSERVATION_SOURCES,
    PREDICTED_CHUNKS,
    RUN_POLICY,
    TASK_SUCCESS,
    PerceptionConfig,
    PolicyNodeConfig,
    SensorInputsConfig,
    SimRobotConfig,
)
from ate_ros.core.deploy.latency import LatencyStats
from ate_ros.core.deploy.perception import FreshestSync, prepare_image
from ate_ros.core.deploy.trajectory import TrajectoryFollower

__all__ = [
    "ACTION_CHUNK",
    "BUILTIN_POLICIES",
    "DEFAULT_CONTROLLER",
    "INSTRUCTION",
    "ENV_STATE",
    "JOINT_STATES",
    "OBSERVATION",
    "OBSERVATION_SOURCES",
    "PREDICTED_CHUNKS",
    "RUN_POLICY",
    "TASK_SUCCESS",
    "FreshestSync",
    "HoldPolicy",
    "LatencyStats",
    "PerceptionConfig",
    "PolicyNodeConfig",
    "SensorInputsConfig",
    "SimRobotConfig",
    "TrajectoryFollower",
    "WavePolicy",
    "builtin_policy",
    "prepare_image",
]
