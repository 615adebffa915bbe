"""Forward kinematics for visualising action chunks (end-effector paths).

Three sources, chosen by :func:`load_kinematics`:

- :class:`UrdfChain`: the serial chain from ``embodiment.base_frame`` to ``embodiment.ee_link`` in
  the embodiment's URDF, parsed with the standard library (revolute, continuous, prismatic and
  fixed joints; enough for arms; no mesh loading, so no extra dependency).
- :class:`SimKinematics`: the MuJoCo model of the simulation (``ate_ros.core.sim``), for the
  simulated embodiments.
- :class:`JointSpaceProjection`: the fallback when neither is available: the first three joints
  as x, y, z, so a chunk can still be looked at (the frame is then not metric).

All take ``(N, D)`` joint positions in the embodiment's joint order and return ``(N, 3)`` positions
of the end effector in ``frame``.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import transforms3d

from ate_ros.core.embodiment import Embodiment

logger = logging.getLogger(__name__)


@runtime_checkable
class ForwardKinematics(Protocol):
    """Maps joint positions to end-effector positions."""

    frame: str
    """Frame the positions are expressed in (marker ``frame_id``)."""

    metric: bool
    """True when positions are metres in ``frame`` (False for the joint-space fallback)."""

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        """(N, D) joint positions in the embodiment's order -> (N, 3) end-effector positions."""
        ...


class KinematicsError(ValueError):
    """A URDF or chain could not be used for forward kinematics."""


def _origin(elem: ET.Element | None) -> np.ndarray:
    """4x4 transform of a URDF ``<origin xyz rpy>`` (missing -> identity)."""
    T = np.eye(4)
    if elem is None:
        return T
    xyz = [float(v) for v in elem.get("xyz", "0 0 0").split()]
    rpy = [float(v) for v in elem.get("rpy", "0 0 0").split()]
    # URDF rpy is fixed-axis roll about x, then pitch about y, then yaw about z ('sxyz').
    T[:3, :3] = transforms3d.euler.euler2mat(*rpy, axes="sxyz")
    T[:3, 3] = xyz
    return T


@dataclass
class _ChainJoint:
    name: str
    kind: str  # revolute | continuous | prismatic | fixed
    origin: np.ndarray  # (4, 4) parent link -> joint frame at q = 0
    axis: np.ndarray  # (3,) unit axis in the joint frame
    index: int  # column in the embodiment's q, -1 when not driven by the embodiment


class UrdfChain:
    """Forward kinematics of the serial chain ``base_frame -> ee_link`` of a URDF.

    Joints on the chain that are not joints of the embodiment (fixed, or actuated but not driven
    by the policy) are held at zero.
    """

    metric = True

    def __init__(self, urdf: str | Path, base_frame: str, ee_link: str,
                 joint_names: list[str]) -> None:
        text = str(urdf)
        # URDF text (e.g. a robot_description) is too long / multi-line to be a path.
        is_text = isinstance(urdf, str) and ("<" in text or "\n" in text)
        try:
            root = (ET.fromstring(text) if is_text or not Path(urdf).is_file()
                    else ET.parse(Path(urdf)).getroot())
        except ET.ParseError as exc:
            raise KinematicsError(f"cannot parse URDF {urdf}: {exc}") from exc
        by_child: dict[str, ET.Element] = {}
        for j in root.findall("joint"):
            child = j.find("child")
            if child is not None:
                by_child[child.get("link", "")] = j
        links = {link.get("name") for link in root.findall("link")}
        for name, what in ((base_frame, "base_frame"), (ee_link, "ee_link")):
            if name not in links:
                raise KinematicsError(f"{what} {name!r} is not a link of the URDF "
                                      f"(links: {sorted(links)})")
        chain: list[ET.Element] = []
        link = ee_link
        while link != base_frame:
            if link not in by_child:
                raise KinematicsError(f"link {ee_link!r} is not below {base_frame!r} in the URDF")
            j = by_child[link]
            chain.append(j)
            link = j.find("parent").get("link")  # type: ignore[union-attr]
        index = {n: i for i, n in enumerate(joint_names)}
        self.joints: list[_ChainJoint] = []
        for j in reversed(chain):
            axis_el = j.find("axis")
            axis = np.array([float(v) for v in (axis_el.get("xyz", "1 0 0") if axis_el is not None
                                                else "1 0 0").split()])
            axis = axis / max(np.linalg.norm(axis), 1e-12)
            self.joints.append(_ChainJoint(j.get("name", ""), j.get("type", "fixed"),
                                           _origin(j.find("origin")), axis,
                                           index.get(j.get("name", ""), -1)))
        self.frame = base_frame
        self.ee_link = ee_link

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        qs = np.atleast_2d(np.asarray(qs, dtype=np.float64))
        n = qs.shape[0]
        T = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()  # (N, 4, 4) base -> current frame
        for j in self.joints:
            T = T @ j.origin
            if j.kind == "fixed" or j.index < 0:
                continue
            q = qs[:, j.index]
            M = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
            if j.kind in ("revolute", "continuous"):
                M[:, :3, :3] = _axis_angle(j.axis, q)
            elif j.kind == "prismatic":
                M[:, :3, 3] = q[:, None] * j.axis
            T = T @ M
        return T[:, :3, 3]


def _axis_angle(axis: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rodrigues: (3,) unit axis, (N,) angles -> (N, 3, 3) rotations."""
    x, y, z = axis
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


class JointSpaceProjection:
    """Fallback: the first three joints (zero-padded) as x, y, z. Not metric."""

    metric = False

    def __init__(self, frame: str = "base_link") -> None:
        self.frame = frame

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        qs = np.atleast_2d(np.asarray(qs, dtype=np.float64))
        out = np.zeros((qs.shape[0], 3))
        k = min(3, qs.shape[1])
        out[:, :k] = qs[:, :k]
        return out


class SimKinematics:
    """End-effector positions from the MuJoCo model of a simulated embodiment.

    Uses ``ate_ros.core.sim``'s own forward kinematics, so markers match what the simulation does.
    """

    metric = True

    def __init__(self, embodiment: Embodiment) -> None:
        from ate_ros.core.sim.env import SimEnv  # lazy: mujoco is an optional extra

        # Any task builds the same arm; the renderer is created lazily, so this is cheap.
        self._env = SimEnv(embodiment, "reach", seed=0)
        self.frame = embodiment.base_frame

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        qs = np.atleast_2d(np.asarray(qs, dtype=np.float64))
        return np.asarray(self._env.ee_positions(qs), dtype=np.float64).reshape(-1, 3)


def load_kinematics(embodiment: Embodiment, source: str = "auto") -> ForwardKinematics:
    """Pick forward kinematics for ``embodiment``.

    Args:
        source: ``"urdf"``, ``"sim"``, ``"joints"`` or ``"auto"`` (URDF when the embodiment names
            one and an ``ee_link``, else the simulation model, else the joint-space fallback).
    """
    if source not in ("auto", "urdf", "sim", "joints"):
        raise KinematicsError(
            f"kinematics source must be auto, urdf, sim or joints; got {source!r}")
    errors: list[str] = []
    if source in ("auto", "urdf") and embodiment.urdf and embodiment.ee_link:
        try:
            return UrdfChain(embodiment.urdf, embodiment.base_frame, embodiment.ee_link,
                             embodiment.joint_names)
        except (KinematicsError, OSError) as exc:
            if source == "urdf":
                raise
            errors.append(str(exc))
    elif source == "urdf":
        raise KinematicsError(f"embodiment {embodiment.name!r} has no urdf/ee_link")
    if source in ("auto", "sim"):
        try:
            return SimKinematics(embodiment)
        except Exception as exc:  # noqa: BLE001 - any failure means "no sim model here"
            if source == "sim":
                raise KinematicsError(f"no simulation kinematics: {exc}") from exc
            errors.append(f"sim: {exc}")
    if source == "auto":
        logger.warning("no forward kinematics for %s (%s); showing joints 0-2 as x, y, z",
                       embodiment.name, "; ".join(errors) or "no urdf, no sim model")
    return JointSpaceProjection(embodiment.base_frame)
