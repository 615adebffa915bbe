"""Chunk execution, ROS-free: safety limits and scheduling of action chunks onto control ticks.

- :class:`ExecutionConfig` / :class:`ExecutorNodeConfig`: parameters (they become ROS parameters).
- :class:`ChunkScheduler`: ``submit`` chunks, ``command`` every tick, ``needs_chunk``,
  ``planned`` (for streaming a JointTrajectory), ``reset``, ``stats``.
- :func:`limit_step`: one position/velocity/acceleration-limited step.
- :class:`ChunkExecutor`: executor_node's per-tick decisions (``step(now) -> TickDecision``:
  stream, hold, brake, send a FollowJointTrajectory goal; goal outcomes).

Policy-side gating (``PolicyGate``) lives in :mod:`ate_ros.core.deploy.policy_gate`.
"""

from ate_ros.core.execution.config import (
    BLEND_MODES,
    CHUNKING_MODES,
    OUTPUT_MODES,
    ExecutionConfig,
    ExecutorNodeConfig,
)
from ate_ros.core.execution.executor import (
    FJT_FAILURE_CODES,
    FJT_MAX_SECONDS,
    ChunkExecutor,
    Output,
    SupervisedChunk,
    TickDecision,
)
from ate_ros.core.execution.goals import GoalEnd, GoalOutcome
from ate_ros.core.execution.safety import brake_step, limit_step
from ate_ros.core.execution.scheduler import (
    REJECT_REASONS,
    ChunkScheduler,
    ExecutionStats,
    SubmitResult,
)

__all__ = [
    "BLEND_MODES",
    "CHUNKING_MODES",
    "FJT_FAILURE_CODES",
    "FJT_MAX_SECONDS",
    "OUTPUT_MODES",
    "REJECT_REASONS",
    "ChunkExecutor",
    "ChunkScheduler",
    "ExecutionConfig",
    "ExecutionStats",
    "ExecutorNodeConfig",
    "GoalEnd",
    "GoalOutcome",
    "Output",
    "SubmitResult",
    "SupervisedChunk",
    "TickDecision",
    "brake_step",
    "limit_step",
]
