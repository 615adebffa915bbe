"""The layout of ``ate_ros/ActionChunk``, read from any message object (ROS-free).

A chunk is flat (``msg/ActionChunk.msg``): ``joint_names`` (D), ``dt``, ``positions`` (H x D,
row-major) and ``samples`` (extra sampled chunks of H x D, one after the other). rclpy builds
and parses flat float64 arrays without one Python object per point, which a JointTrajectory
needs (the cost of each: docs/design_notes.md, "Messages shaped for rclpy").

Bags recorded before this layout hold the legacy one (``trajectory``:
trajectory_msgs/JointTrajectory, ``samples``: JointTrajectory[]). rosbags decodes each bag with
the definitions stored in it, so bag readers (bag2dataset, plot-chunks) get either kind of
object; :func:`read_action_chunk` accepts both, and rclpy messages too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ChunkFields", "ChunkLayoutError", "point_times", "read_action_chunk",
           "read_joint_trajectory"]


class ChunkLayoutError(ValueError):
    """The message's arrays do not form a chunk (lengths that do not divide, ragged points)."""


@dataclass
class ChunkFields:
    """One ActionChunk's points, as stored (columns in the message's joint order)."""

    joint_names: list[str]
    times: np.ndarray  # (H,) seconds after header.stamp
    positions: np.ndarray  # (H, D) joint positions, columns in joint_names order
    samples: list[np.ndarray]  # extra sampled chunks, each (H, D)

    @property
    def horizon(self) -> int:
        return int(self.positions.shape[0])


def point_times(dt: float, horizon: int) -> np.ndarray:
    """Times of a chunk's points after its stamp: point i (0-based) at ``(i + 1) * dt``."""
    return float(dt) * np.arange(1, horizon + 1, dtype=np.float64)


def read_action_chunk(msg: Any) -> ChunkFields:
    """The points of an ``ate_ros/ActionChunk`` (flat or legacy layout; rclpy or rosbags).

    Raises:
        ChunkLayoutError: ``positions`` (or ``samples``) is not a whole number of points of
            ``len(joint_names)`` joints (of chunks of H points), or, in the legacy layout, a
            point's length differs from ``joint_names``.
    """
    if hasattr(msg, "trajectory"):
        return _read_legacy(msg)
    names = list(msg.joint_names)
    n = len(names)
    flat = np.asarray(msg.positions, dtype=np.float64).ravel()
    if n == 0:
        if flat.size:
            raise ChunkLayoutError(f"{flat.size} positions but no joint_names")
        return ChunkFields(names, point_times(msg.dt, 0), flat.reshape(0, 0), [])
    if flat.size % n:
        raise ChunkLayoutError(f"{flat.size} positions are not a whole number of points of "
                               f"{n} joints {names}")
    positions = flat.reshape(-1, n)
    per_chunk = positions.size
    extra = np.asarray(msg.samples, dtype=np.float64).ravel()
    if extra.size and (per_chunk == 0 or extra.size % per_chunk):
        raise ChunkLayoutError(f"{extra.size} sample values are not a whole number of chunks "
                               f"of {positions.shape[0]} x {n}")
    samples = list(extra.reshape(-1, *positions.shape)) if extra.size else []
    return ChunkFields(names, point_times(msg.dt, positions.shape[0]), positions, samples)


def read_joint_trajectory(traj: Any) -> ChunkFields:
    """The points of a ``trajectory_msgs/JointTrajectory`` (rclpy or rosbags; no samples).

    Raises:
        ChunkLayoutError: a point's length differs from ``joint_names``.
    """
    names = list(traj.joint_names)
    n = len(names)
    rows = []
    for i, p in enumerate(traj.points):
        if len(p.positions) != n:
            raise ChunkLayoutError(f"point {i} has {len(p.positions)} positions for {n} joint "
                                   "names")
        rows.append(np.asarray(p.positions, dtype=np.float64))
    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                      for p in traj.points], dtype=np.float64)
    return ChunkFields(names, times, np.array(rows, dtype=np.float64).reshape(len(rows), n), [])


def _read_legacy(msg: Any) -> ChunkFields:
    """``trajectory`` (JointTrajectory) + ``samples`` (JointTrajectory[]): older bags."""
    chunk = read_joint_trajectory(msg.trajectory)
    names = chunk.joint_names
    for s in msg.samples:
        sample = read_joint_trajectory(s)
        if sorted(sample.joint_names) != sorted(names):
            raise ChunkLayoutError(f"a sample's joints {sample.joint_names} differ from the "
                                   f"chunk's {names}")
        chunk.samples.append(sample.positions[:, [sample.joint_names.index(j) for j in names]])
    return chunk
