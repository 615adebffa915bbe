"""Kinematic descriptions of the simulated arms and the MJCF scene generated from them.

Every simulated embodiment has a YAML under ``config/embodiments/`` (joint names, limits, slots,
camera) and an :class:`ArmSpec` here (link geometry, joint axes, home posture). The YAML is the
source of truth for what the policy sees (limits, velocities); the spec adds what only the
simulator needs. :func:`build_scene_xml` combines both with a tabletop, task objects and a
``front`` camera into one MJCF string, so nothing is read from or written to disk.

Frames: the world origin is at the arm base on the table top (z = 0), +x points away from the
robot into the workspace, +z up. The ``front`` camera looks back at the robot from +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_ros.core.embodiment import Embodiment

# Colours (RGBA) the tasks can name in instructions. Saturated and mutually distant in RGB so a
# 96x96 image separates them after JPEG-free rendering.
COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "green": (0.1, 0.7, 0.15, 1.0),
    "blue": (0.1, 0.2, 0.9, 1.0),
    "yellow": (0.9, 0.8, 0.1, 1.0),
}

TIP_RADIUS = 0.015
"""Radius (m) of the spherical fingertip, the only arm geom that collides."""
BLOCK_HALF = 0.03
"""Half edge (m) of the cubes used by ``push`` and ``pick_color``."""
BALL_RADIUS = 0.03
"""Radius (m) of the (non-colliding) target ball of ``reach``."""
BALL_POST_HALF = 0.15
"""Half-length (m) of the thin visual post under the reach ball. From one camera a floating
ball's height and depth are ambiguous (a high far ball looks like a low near one); the post's
foot on the table fixes (x, y), its length the height. It reaches below the table top, which
hides the rest."""
NUM_TOUCH_BLOCKS = 2
"""Static coloured blocks in the scene for ``pick_color``."""


@dataclass(frozen=True)
class LinkSpec:
    """One joint and the link that follows it.

    Attributes:
        axis: Joint axis in the parent frame (unit vector).
        offset: Position (m) of this joint relative to the previous joint, in the parent frame.
        length: Length (m) of the visual capsule drawn along +z after the joint (0 for none).
        radius: Capsule radius (m).
    """

    axis: tuple[float, float, float]
    offset: tuple[float, float, float]
    length: float
    radius: float = 0.03


@dataclass(frozen=True)
class ArmSpec:
    """Geometry of a serial arm whose zero posture points straight up.

    Attributes:
        links: One entry per actuated joint, base to tip.
        tool_length: Distance (m) from the last joint to the fingertip centre along +z.
        home: (D,) joint posture at the start of every episode (before randomisation) and the
            posture the IK's null-space term pulls toward.
        kp: Position-actuator stiffness (N m / rad).
        damping: Joint damping (N m s / rad); with ``kp`` and ``armature`` it sets how fast a
            target is reached (about one control period).
        armature: Rotor inertia added to every joint (kg m^2); keeps the light links stable at
            the 2 ms time step.
        color: RGBA of the links, so the arms look different in images.
    """

    links: tuple[LinkSpec, ...]
    tool_length: float
    home: tuple[float, ...]
    kp: float = 60.0
    damping: float = 6.0
    armature: float = 0.05
    color: tuple[float, float, float, float] = (0.7, 0.7, 0.72, 1.0)

    @property
    def dof(self) -> int:
        return len(self.links)


_Z = (0.0, 0.0, 1.0)
_Y = (0.0, 1.0, 0.0)

ARM_SPECS: dict[str, ArmSpec] = {
    # 6-DoF: yaw, shoulder pitch, elbow pitch, wrist roll, wrist pitch, tool roll.
    "sim_arm6": ArmSpec(
        links=(
            LinkSpec(_Z, (0.0, 0.0, 0.0), 0.20, 0.045),
            LinkSpec(_Y, (0.0, 0.0, 0.20), 0.34, 0.035),
            LinkSpec(_Y, (0.0, 0.0, 0.34), 0.15, 0.03),
            LinkSpec(_Z, (0.0, 0.0, 0.15), 0.14, 0.028),
            LinkSpec(_Y, (0.0, 0.0, 0.14), 0.06, 0.025),
            LinkSpec(_Z, (0.0, 0.0, 0.06), 0.0, 0.02),
        ),
        tool_length=0.07,
        home=(0.0, 0.35, 1.4, 0.0, 1.35, 0.0),
        color=(0.75, 0.75, 0.78, 1.0),
    ),
    # 7-DoF, Panda-like alternation of roll and pitch joints; shorter links, taller base.
    "sim_arm7": ArmSpec(
        links=(
            LinkSpec(_Z, (0.0, 0.0, 0.0), 0.26, 0.045),
            LinkSpec(_Y, (0.0, 0.0, 0.26), 0.0, 0.04),
            LinkSpec(_Z, (0.0, 0.0, 0.0), 0.30, 0.035),
            LinkSpec(_Y, (0.0, 0.0, 0.30), 0.0, 0.035),
            LinkSpec(_Z, (0.0, 0.0, 0.0), 0.27, 0.03),
            LinkSpec(_Y, (0.0, 0.0, 0.27), 0.06, 0.025),
            LinkSpec(_Z, (0.0, 0.0, 0.06), 0.0, 0.02),
        ),
        tool_length=0.06,
        home=(0.0, 0.3, 0.0, 1.6, 0.0, 1.2, 0.0),
        color=(0.95, 0.95, 0.95, 1.0),
    ),
    # 5-DoF: yaw, three pitch joints and a tool roll (a low-cost desktop arm layout).
    "sim_arm5": ArmSpec(
        links=(
            LinkSpec(_Z, (0.0, 0.0, 0.0), 0.16, 0.045),
            LinkSpec(_Y, (0.0, 0.0, 0.16), 0.30, 0.035),
            LinkSpec(_Y, (0.0, 0.0, 0.30), 0.28, 0.03),
            LinkSpec(_Y, (0.0, 0.0, 0.28), 0.07, 0.025),
            LinkSpec(_Z, (0.0, 0.0, 0.07), 0.0, 0.02),
        ),
        tool_length=0.07,
        home=(0.0, 0.45, 1.5, 1.1, 0.0),
        color=(0.35, 0.35, 0.4, 1.0),
    ),
}


class ArmSpecError(ValueError):
    """An embodiment has no simulated arm, or its YAML does not match the arm."""


def arm_spec_for(emb: Embodiment) -> ArmSpec:
    """The :class:`ArmSpec` of a simulated embodiment, checked against its YAML."""
    if emb.name not in ARM_SPECS:
        raise ArmSpecError(
            f"embodiment {emb.name!r} has no simulated arm; simulated embodiments are "
            f"{sorted(ARM_SPECS)}")
    spec = ARM_SPECS[emb.name]
    if emb.dof != spec.dof:
        raise ArmSpecError(
            f"{emb.name}: the YAML lists {emb.dof} joints but the simulated arm has {spec.dof}")
    home = np.asarray(spec.home)
    if not np.all(emb.within_limits(home)):
        raise ArmSpecError(f"{emb.name}: home posture {spec.home} is outside the YAML limits")
    return spec


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.atleast_1d(v))


def _look_at_xyaxes(pos: np.ndarray, target: np.ndarray) -> str:
    """MJCF ``xyaxes`` for a camera at ``pos`` looking at ``target`` with world z up."""
    fwd = target - pos
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, fwd)
    return _fmt(np.concatenate([x, y]))


# Front camera: in front of the table, above it, looking back at the workspace centre.
CAMERA_POS = np.array([0.78, 0.0, 0.78])
CAMERA_TARGET = np.array([0.22, 0.0, 0.05])
CAMERA_FOVY = 50.0


def build_scene_xml(emb: Embodiment, timestep: float = 0.002) -> str:
    """MJCF of the arm ``emb`` on the shared tabletop with every task's objects.

    All tasks share one scene so one model serves any task; objects a task does not use are
    parked out of view on reset. Only the fingertip, the table and the cubes collide (the arm's
    links do not), which keeps contacts cheap and the experts' motions simple.

    Args:
        emb: A simulated embodiment (``emb.name`` in :data:`ARM_SPECS`).
        timestep: Physics time step (s).

    Returns:
        The MJCF XML string.
    """
    spec = arm_spec_for(emb)
    rgba = _fmt(spec.color)
    bodies: list[str] = []
    closers: list[str] = []
    for i, (link, joint) in enumerate(zip(spec.links, emb.joints)):
        # Bodies nest: each joint's body is a child of the previous one.
        bodies.append(
            f'<body name="link{i + 1}" pos="{_fmt(link.offset)}" gravcomp="1">'
            f'<inertial pos="0 0 {link.length / 2:.4g}" mass="{0.8 - 0.1 * i:.3g}" '
            f'diaginertia="0.004 0.004 0.002"/>'
            f'<joint name="{joint.name}" axis="{_fmt(link.axis)}" '
            f'range="{joint.lower:.6g} {joint.upper:.6g}"/>'
        )
        if link.length > 0:
            bodies.append(
                f'<geom type="capsule" fromto="0 0 0 0 0 {link.length:.4g}" '
                f'size="{link.radius:.4g}" rgba="{rgba}" contype="0" conaffinity="0"/>')
        closers.append("</body>")
    tool = (
        f'<body name="tool" pos="0 0 0" gravcomp="1">'
        f'<geom type="cylinder" fromto="0 0 0 0 0 {spec.tool_length - TIP_RADIUS:.4g}" '
        f'size="0.012" rgba="0.2 0.2 0.2 1" contype="0" conaffinity="0"/>'
        f'<geom name="tip" type="sphere" pos="0 0 {spec.tool_length:.4g}" '
        f'size="{TIP_RADIUS}" rgba="0.95 0.5 0.1 1" friction="0.3 0.005 0.0001"/>'
        f'<site name="{emb.ee_link or "ee"}" pos="0 0 {spec.tool_length:.4g}" size="0.005"/>'
        f"</body>"
    )
    arm = "".join(bodies) + tool + "".join(reversed(closers))
    actuators = "".join(
        f'<position name="act_{j.name}" joint="{j.name}" kp="{spec.kp}" '
        f'ctrlrange="{j.lower:.6g} {j.upper:.6g}"/>' for j in emb.joints)
    joint_defaults = f'<joint damping="{spec.damping}" armature="{spec.armature}"/>'
    touch_blocks = "".join(
        f'<body name="touch_block{k}" mocap="true" pos="{1.0 + 0.2 * k} 1.5 {BLOCK_HALF}">'
        f'<geom name="touch_block{k}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" '
        f'rgba="0.5 0.5 0.5 1"/></body>' for k in range(NUM_TOUCH_BLOCKS))
    cam_xy = _look_at_xyaxes(CAMERA_POS, CAMERA_TARGET)
    return f"""<mujoco model="{emb.name}_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast"/>
  <visual>
    <quality offsamples="0" shadowsize="0"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.55 0.55 0.55" specular="0.1 0.1 0.1"/>
  </visual>
  <default>{joint_defaults}<geom friction="0.6 0.005 0.0001" solref="0.01 1"/></default>
  <worldbody>
    <light pos="0.4 0 1.5" dir="0 0 -1" diffuse="0.4 0.4 0.4" directional="true"/>
    <geom name="table" type="box" pos="0.35 0 -0.02" size="0.55 0.6 0.02"
          rgba="0.62 0.55 0.45 1"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.3 0.32 0.35 1"
          contype="0" conaffinity="0"/>
    <geom name="pedestal" type="cylinder" pos="0 0 0.01" size="0.08 0.01"
          rgba="0.25 0.25 0.28 1" contype="0" conaffinity="0"/>
    <camera name="front" pos="{_fmt(CAMERA_POS)}" xyaxes="{cam_xy}" fovy="{CAMERA_FOVY}"/>
    {arm}
    <body name="target_ball" mocap="true" pos="1.2 1.2 0.1">
      <geom name="target_ball" type="sphere" size="{BALL_RADIUS}" rgba="1 0 0 1"
            contype="0" conaffinity="0"/>
      <geom name="target_post" type="cylinder" pos="0 0 -{BALL_POST_HALF}"
            size="0.006 {BALL_POST_HALF}" rgba="0.2 0.2 0.22 1" contype="0" conaffinity="0"/>
    </body>
    <body name="goal" mocap="true" pos="1.2 -1.2 0.0005">
      <geom name="goal" type="cylinder" size="0.045 0.0005" rgba="0.1 0.7 0.15 0.6"
            contype="0" conaffinity="0"/>
    </body>
    <body name="push_block" pos="1.5 -1.5 {BLOCK_HALF}">
      <freejoint name="push_block"/>
      <geom name="push_block" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}"
            mass="0.08" rgba="0.85 0.1 0.1 1" friction="0.5 0.005 0.0001"/>
    </body>
    {touch_blocks}
  </worldbody>
  <actuator>{actuators}</actuator>
</mujoco>
"""
