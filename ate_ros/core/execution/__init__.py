"""Chunk execution, ROS-free: safety limits and scheduling of action chunks onto control ticks.

- :class:`ExecutionConfig` / :class:`ExecutorNodeConfig`: parameters (they become ROS parameters).
- :class:`ChunkScheduler`: ``submit`` chunks, ``command`` every tick, ``needs_chunk``,
  ``planned`` (for streaming a JointTrajectory), ``reset``, ``stats``.
- :func:`limit_step`: one position/velocity/acceleration-limited step.
"""

from ate_ros.core.execution.config import (
    BLEND_MODES,
    OUTPUT_MODES,
    ExecutionConfig,
    ExecutorNodeConfig,
)
from ate_ros.core.execution.safety import brake_step, limit_step
from ate_ros.core.execution.scheduler import (
    REJECT_REASONS,
    ChunkScheduler,
    ExecutionStats,
    SubmitResult,
)

__all__ = [
    "BLEND_MODES",
    "OUTPUT_MODES",
    "REJECT_REASONS",
    "ChunkScheduler",
    "ExecutionConfig",
    "ExecutionStats",
    "ExecutorNodeConfig",
    "SubmitResult",
    "brake_step",
    "limit_step",
]
