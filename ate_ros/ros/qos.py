"""Named QoS profiles, chosen on purpose for each kind of stream.

- :data:`SENSOR_QOS`: camera images and joint states going into the policy. Best effort, depth 1:
  the policy wants the freshest frame, never a backlog (same as rclpy's ``qos_profile_sensor_data``
  but with depth 1).
- :data:`COMMAND_QOS`: action chunks and trajectory commands. Reliable, depth 10: a lost chunk
  means a stall, and a small queue absorbs bursts without letting stale commands pile up.
- :data:`LATCHED_QOS`: status and instruction. Reliable, transient-local, depth 1: a late joiner
  gets the last value (what ROS 1 called latched).
- :data:`DIAGNOSTICS_QOS`: ``/diagnostics`` (reliable, depth 10, like diagnostic_updater).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

__all__ = ["COMMAND_QOS", "DIAGNOSTICS_QOS", "LATCHED_QOS", "SENSOR_QOS", "STATE_QOS",
           "sensor_qos"]


def sensor_qos(depth: int = 1) -> QoSProfile:
    """Best-effort, volatile, keep-last ``depth`` (compatible with reliable publishers too)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


SENSOR_QOS = sensor_qos(1)
"""Images / observations into the policy: freshest only."""

STATE_QOS = sensor_qos(5)
"""Joint states into the executor: best effort, a few deep (the newest is used)."""

COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
"""Action chunks, JointTrajectory commands."""

LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Status, instruction: late subscribers receive the last message."""

DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
