"""URDF of a simulated arm, generated from its compiled MuJoCo model.

RViz's RobotModel display and ``robot_state_publisher`` need a URDF; the simulated arms only exist
as MJCF generated in code (:func:`ate_ros.core.sim.arms.build_scene_xml`). :func:`build_urdf`
compiles that MJCF exactly as :class:`ate_ros.core.sim.env.SimEnv` does and walks the arm's
kinematic tree, so the URDF cannot drift from the simulation:

- the root link is the embodiment's ``base_frame`` (``world``, MuJoCo's world body), with the
  pedestal drawn on it;
- every body of the arm becomes a link of the same name (``link1`` ... ``tool``) with visuals that
  approximate its geoms (capsule -> cylinder + two spheres; sphere, cylinder and box as they are;
  mesh and ellipsoid -> their bounding box) in the geoms' colours, and an inertial block;
- every hinge joint becomes a ``revolute`` joint of the same name (the names ``sim_robot_node``
  publishes on ``joint_states``) with the MuJoCo axis, the joint range as limits (the embodiment
  YAML's), the YAML's ``max_velocity``, an effort limit from the actuator and the joint damping;
  bodies without a joint hang on ``fixed`` joints;
- the end-effector site (``embodiment.ee_link``, the fingertip centre) is a link on a fixed joint,
  so TF has the frame the predicted-chunk markers are computed for.

ROS-free: the result is a string (robot_state_publisher's ``robot_description`` parameter, or the
``robot_description`` topic).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import transforms3d

from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.sim.arms import build_scene_xml

__all__ = ["WORLD_GEOMS", "UrdfExportError", "build_urdf", "urdf_from_model"]

WORLD_GEOMS = ("pedestal",)
"""Geoms of MuJoCo's world body drawn on the root link (the arm's base, not the table)."""

_CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE
_SPHERE = mujoco.mjtGeom.mjGEOM_SPHERE
_CYLINDER = mujoco.mjtGeom.mjGEOM_CYLINDER
_BOX = mujoco.mjtGeom.mjGEOM_BOX
_SKIPPED = (mujoco.mjtGeom.mjGEOM_PLANE,)


class UrdfExportError(ValueError):
    """The MuJoCo model has a structure the URDF export does not support."""


def build_urdf(embodiment: str | Embodiment) -> str:
    """The URDF of a simulated arm (``sim_arm5``, ``sim_arm6``, ``sim_arm7``).

    Args:
        embodiment: Embodiment name, YAML path or object; must be a simulated arm.

    Returns:
        The URDF XML string (robot name = embodiment name).
    """
    emb = load_embodiment(embodiment)
    model = mujoco.MjModel.from_xml_string(build_scene_xml(emb))
    return urdf_from_model(model, emb)


def _num(v) -> str:
    """Space-separated numbers, precise enough that the URDF reproduces MuJoCo to ~1e-10 m."""
    return " ".join(f"{float(x):.12g}" if abs(float(x)) > 1e-14 else "0"
                    for x in np.atleast_1d(v))


def _origin(parent: ET.Element, pos, quat=None) -> None:
    """``<origin xyz rpy>`` of a pose given as position + MuJoCo quaternion (w, x, y, z)."""
    rpy = (0.0, 0.0, 0.0) if quat is None else transforms3d.euler.quat2euler(quat, axes="sxyz")
    ET.SubElement(parent, "origin", xyz=_num(pos), rpy=_num(rpy))


class _Materials:
    """Named URDF materials, one per distinct RGBA (declared once at the top of the robot)."""

    def __init__(self, robot: ET.Element) -> None:
        self.robot = robot
        self.names: dict[tuple[float, ...], str] = {}

    def name(self, rgba) -> str:
        key = tuple(round(float(c), 4) for c in rgba)
        if key not in self.names:
            name = f"rgba_{len(self.names)}"
            mat = ET.Element("material", name=name)
            ET.SubElement(mat, "color", rgba=_num(key))
            self.robot.insert(len(self.names), mat)  # materials first, links and joints after
            self.names[key] = name
        return self.names[key]


def _visuals(link: ET.Element, model: mujoco.MjModel, geom: int, shift: np.ndarray,
             materials: _Materials, default_name: str) -> None:
    """Append the visual(s) approximating ``geom`` to ``link`` (geom pose minus ``shift``)."""
    gtype = model.geom_type[geom]
    if gtype in _SKIPPED:
        return
    pos = model.geom_pos[geom] - shift
    quat = model.geom_quat[geom]
    size = model.geom_size[geom]
    mat = materials.name(model.geom_rgba[geom])
    name = model.geom(geom).name or default_name
    # (position in the link, shape tag, shape attributes) of each visual.
    parts: list[tuple[np.ndarray, str, dict[str, str]]] = []
    if gtype == _SPHERE:
        parts.append((pos, "sphere", {"radius": _num(size[0])}))
    elif gtype == _CYLINDER:
        parts.append((pos, "cylinder", {"radius": _num(size[0]), "length": _num(2 * size[1])}))
    elif gtype == _CAPSULE:
        axis = transforms3d.quaternions.quat2mat(quat)[:, 2]
        parts.append((pos, "cylinder", {"radius": _num(size[0]), "length": _num(2 * size[1])}))
        for end in (-1.0, 1.0):
            parts.append((pos + end * size[1] * axis, "sphere", {"radius": _num(size[0])}))
    elif gtype == _BOX:
        parts.append((pos, "box", {"size": _num(2 * size[:3])}))
    else:  # mesh, ellipsoid, height field: the geom-frame bounding box
        center, half = model.geom_aabb[geom][:3], model.geom_aabb[geom][3:]
        R = transforms3d.quaternions.quat2mat(quat)
        parts.append((pos + R @ center, "box", {"size": _num(2 * half)}))
    for k, (p, shape, attrs) in enumerate(parts):
        vis = ET.SubElement(link, "visual", name=name if len(parts) == 1 else f"{name}_{k}")
        _origin(vis, p, quat)
        ET.SubElement(ET.SubElement(vis, "geometry"), shape, **attrs)
        ET.SubElement(vis, "material", name=mat)


def _inertial(link: ET.Element, model: mujoco.MjModel, body: int, shift: np.ndarray) -> None:
    mass = float(model.body_mass[body])
    if mass <= 0:
        return
    inertial = ET.SubElement(link, "inertial")
    _origin(inertial, model.body_ipos[body] - shift, model.body_iquat[body])
    ET.SubElement(inertial, "mass", value=_num(mass))
    ixx, iyy, izz = (float(v) for v in model.body_inertia[body])
    ET.SubElement(inertial, "inertia", ixx=_num(ixx), ixy="0", ixz="0", iyy=_num(iyy),
                  iyz="0", izz=_num(izz))


def _effort(model: mujoco.MjModel, joint: int, lower: float, upper: float) -> float:
    """Largest force/torque the simulation applies at ``joint`` (0 when unactuated)."""
    if getattr(model, "jnt_actfrclimited", None) is not None and model.jnt_actfrclimited[joint]:
        return float(np.max(np.abs(model.jnt_actfrcrange[joint])))
    effort = 0.0
    for a in range(model.nu):
        if (model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT
                or model.actuator_trnid[a, 0] != joint):
            continue
        if model.actuator_forcelimited[a]:
            effort += float(np.max(np.abs(model.actuator_forcerange[a])))
        else:
            # A position servo pushes with gain * (target - q): at most gain * the target span.
            lo, hi = (model.actuator_ctrlrange[a] if model.actuator_ctrllimited[a]
                      else (lower, upper))
            effort += abs(float(model.actuator_gainprm[a, 0])) * float(hi - lo)
    return effort


def urdf_from_model(model: mujoco.MjModel, embodiment: Embodiment,
                    world_geoms: tuple[str, ...] = WORLD_GEOMS) -> str:
    """The URDF of the arm of ``embodiment`` in a compiled scene ``model``.

    The arm is the top-level body subtree that holds the embodiment's first joint; other bodies of
    the scene (task objects, mocap targets) are left out.

    Args:
        model: A compiled scene (``build_scene_xml``) or any model holding the embodiment's joints
            as hinges (slides become prismatic joints).
        embodiment: Joint names, velocity limits, ``base_frame`` (root link) and ``ee_link`` (a
            site of the arm, exported as a link on a fixed joint).
        world_geoms: Names of world-body geoms drawn on the root link.

    Raises:
        UrdfExportError: A joint of the embodiment is missing or not a hinge/slide, a body has
            several joints, or the ``ee_link`` site is not on the arm.
    """
    emb = embodiment
    velocity = {j.name: float(j.max_velocity) for j in emb.joints}
    joint_ids = []
    for name in emb.joint_names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise UrdfExportError(f"{emb.name}: joint {name!r} is not in the MuJoCo model")
        joint_ids.append(jid)
    if not joint_ids:
        raise UrdfExportError(f"{emb.name}: the embodiment has no joints")
    arm_root = int(model.body_rootid[model.jnt_bodyid[joint_ids[0]]])
    bodies = [b for b in range(1, model.nbody) if model.body_rootid[b] == arm_root]
    if any(model.body_rootid[model.jnt_bodyid[j]] != arm_root for j in joint_ids):
        raise UrdfExportError(f"{emb.name}: the embodiment's joints are not on one arm")

    root = emb.base_frame or "world"
    robot = ET.Element("robot", name=emb.name)
    materials = _Materials(robot)
    link_name: dict[int, str] = {0: root}
    # A URDF joint rotates about an axis through its child link's origin; MuJoCo's joint may sit
    # at ``jnt_pos`` inside its body. Each link frame is its body frame shifted by that position.
    shift: dict[int, np.ndarray] = {0: np.zeros(3)}

    world = ET.SubElement(robot, "link", name=root)
    for g in range(model.ngeom):
        if model.geom_bodyid[g] == 0 and model.geom(g).name in world_geoms:
            _visuals(world, model, g, shift[0], materials, f"{root}_geom{g}")

    for b in bodies:
        name = model.body(b).name or f"body{b}"
        if name in link_name.values():
            raise UrdfExportError(f"{emb.name}: body name {name!r} is used twice")
        parent = int(model.body_parentid[b])
        njnt, adr = int(model.body_jntnum[b]), int(model.body_jntadr[b])
        if njnt > 1:
            raise UrdfExportError(f"{emb.name}: body {name!r} has {njnt} joints (URDF: one)")
        jid = adr if njnt == 1 else -1
        shift[b] = model.jnt_pos[jid].copy() if jid >= 0 else np.zeros(3)
        link_name[b] = name
        link = ET.SubElement(robot, "link", name=name)
        _inertial(link, model, b, shift[b])
        first = int(model.body_geomadr[b])
        for g in range(first, first + int(model.body_geomnum[b])):
            _visuals(link, model, g, shift[b], materials, f"{name}_geom{g - first}")

        # Parent link -> this link at q = 0: [R | t - shift_parent + R shift_child].
        R = transforms3d.quaternions.quat2mat(model.body_quat[b])
        xyz = model.body_pos[b] - shift[parent] + R @ shift[b]
        if jid < 0:
            joint = ET.SubElement(robot, "joint", name=f"{link_name[parent]}_to_{name}",
                                  type="fixed")
        else:
            jtype = model.jnt_type[jid]
            jname = model.joint(jid).name
            if jtype == mujoco.mjtJoint.mjJNT_HINGE:
                kind = "revolute" if model.jnt_limited[jid] else "continuous"
            elif jtype == mujoco.mjtJoint.mjJNT_SLIDE:
                kind = "prismatic"
            else:
                raise UrdfExportError(f"{emb.name}: joint {jname!r} is a ball or free joint")
            joint = ET.SubElement(robot, "joint", name=jname, type=kind)
        ET.SubElement(joint, "parent", link=link_name[parent])
        ET.SubElement(joint, "child", link=name)
        _origin(joint, xyz, model.body_quat[b])
        if jid >= 0:
            ET.SubElement(joint, "axis", xyz=_num(model.jnt_axis[jid]))
            lower, upper = (float(v) for v in model.jnt_range[jid])
            limit = {"effort": _num(_effort(model, jid, lower, upper)),
                     "velocity": _num(velocity.get(jname, 0.0))}
            if kind != "continuous":
                limit.update(lower=_num(lower), upper=_num(upper))
            ET.SubElement(joint, "limit", **limit)
            dof = model.jnt_dofadr[jid]
            ET.SubElement(joint, "dynamics", damping=_num(model.dof_damping[dof]),
                          friction=_num(model.dof_frictionloss[dof]))

    if emb.ee_link:
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, emb.ee_link)
        if sid < 0 or int(model.site_bodyid[sid]) not in link_name or model.site_bodyid[sid] == 0:
            raise UrdfExportError(f"{emb.name}: ee_link {emb.ee_link!r} is not a site of the arm")
        if emb.ee_link in link_name.values():
            raise UrdfExportError(f"{emb.name}: ee_link {emb.ee_link!r} is also a body name")
        b = int(model.site_bodyid[sid])
        ET.SubElement(robot, "link", name=emb.ee_link)
        joint = ET.SubElement(robot, "joint", name=f"{link_name[b]}_to_{emb.ee_link}",
                              type="fixed")
        ET.SubElement(joint, "parent", link=link_name[b])
        ET.SubElement(joint, "child", link=emb.ee_link)
        _origin(joint, model.site_pos[sid] - shift[b], model.site_quat[sid])

    ET.indent(robot, space="  ")
    comment = (f"<!-- Generated by ate_ros.core.sim.urdf from the MuJoCo model of {emb.name} "
               f"(ate_ros/core/sim/arms.py); do not edit. -->\n")
    return ('<?xml version="1.0"?>\n' + comment
            + ET.tostring(robot, encoding="unicode") + "\n")
