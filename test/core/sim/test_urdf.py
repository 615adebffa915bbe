"""The URDF generated for each simulated arm (ate_ros.core.sim.urdf) is the simulated arm.

Forward kinematics is recomputed from the URDF text alone (xml.etree + transforms3d: joint origin
xyz/rpy, then a rotation about the joint axis) and compared with MuJoCo's body and end-effector
site poses for random joint configurations; joint names and limits match the embodiment YAML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from support.paths import ROOT

mujoco = pytest.importorskip("mujoco")
transforms3d = pytest.importorskip("transforms3d")

from ate_ros.core.embodiment import load_embodiment  # noqa: E402
from ate_ros.core.sim import SIM_EMBODIMENTS  # noqa: E402
from ate_ros.core.sim.arms import build_scene_xml  # noqa: E402
from ate_ros.core.sim.urdf import UrdfExportError, build_urdf, urdf_from_model  # noqa: E402

N_CONFIGS = 20
POS_TOL = 1e-6  # m
ROT_TOL = 1e-6


@pytest.fixture(scope="module", params=SIM_EMBODIMENTS)
def arm(request):
    emb = load_embodiment(request.param)
    model = mujoco.MjModel.from_xml_string(build_scene_xml(emb))
    return emb, model, build_urdf(emb)


def _floats(s: str | None, default: str) -> np.ndarray:
    return np.array([float(v) for v in (s or default).split()])


def _origin(joint: ET.Element) -> np.ndarray:
    el = joint.find("origin")
    T = np.eye(4)
    if el is not None:
        T[:3, :3] = transforms3d.euler.euler2mat(*_floats(el.get("rpy"), "0 0 0"), axes="sxyz")
        T[:3, 3] = _floats(el.get("xyz"), "0 0 0")
    return T


class UrdfTree:
    """Links, joints and the forward kinematics of a URDF string, from the text alone."""

    def __init__(self, text: str) -> None:
        self.root_el = ET.fromstring(text)
        self.links = [link.get("name") for link in self.root_el.findall("link")]
        self.joints = {j.get("name"): j for j in self.root_el.findall("joint")}
        self.child_joint = {j.find("child").get("link"): j for j in self.joints.values()}
        self.roots = [n for n in self.links if n not in self.child_joint]

    def movable(self) -> list[ET.Element]:
        return [j for j in self.joints.values() if j.get("type") != "fixed"]

    def fk(self, q: dict[str, float]) -> dict[str, np.ndarray]:
        """Link name -> (4, 4) pose in the root link for joint positions ``q``."""
        poses: dict[str, np.ndarray] = {}

        def pose(link: str) -> np.ndarray:
            if link not in poses:
                j = self.child_joint.get(link)
                if j is None:
                    poses[link] = np.eye(4)
                else:
                    T = pose(j.find("parent").get("link")) @ _origin(j)
                    if j.get("type") in ("revolute", "continuous"):
                        axis = _floats(j.find("axis").get("xyz"), "1 0 0")
                        M = np.eye(4)
                        M[:3, :3] = transforms3d.axangles.axangle2mat(axis, q[j.get("name")])
                        T = T @ M
                    poses[link] = T
            return poses[link]

        for link in self.links:
            pose(link)
        return poses


def test_urdf_is_well_formed_with_one_root(arm):
    emb, _, text = arm
    tree = UrdfTree(text)
    assert tree.root_el.tag == "robot" and tree.root_el.get("name") == emb.name
    assert len(tree.links) == len(set(tree.links)), "duplicate link names"
    assert len(tree.joints) == len(tree.root_el.findall("joint")), "duplicate joint names"
    assert tree.roots == [emb.base_frame] == ["world"]
    for j in tree.joints.values():
        assert j.find("parent").get("link") in tree.links
        assert j.find("child").get("link") in tree.links
    assert len(tree.child_joint) == len(tree.joints), "a link is the child of two joints"
    # Every link is reachable from the root (a tree, not a forest).
    assert set(tree.fk(dict.fromkeys(emb.joint_names, 0.0))) == set(tree.links)
    assert emb.ee_link in tree.links
    # Materials used by visuals are declared; every arm link but the site is drawn.
    declared = {m.get("name") for m in tree.root_el.findall("material")}
    for vis in tree.root_el.iter("visual"):
        assert vis.find("material").get("name") in declared
        assert len(vis.find("geometry")) == 1
    drawn = {link.get("name") for link in tree.root_el.findall("link") if link.find("visual")
             is not None}
    assert {"world", "link1", "tool"} <= drawn


def test_embodiment_joints_are_revolute_with_limits(arm):
    emb, _, text = arm
    tree = UrdfTree(text)
    # Exactly the joints sim_robot_node publishes on joint_states, base to tip.
    assert [j.get("name") for j in tree.movable()] == emb.joint_names
    for spec in emb.joints:
        j = tree.joints[spec.name]
        assert j.get("type") == "revolute"
        lim = j.find("limit")
        assert float(lim.get("lower")) == pytest.approx(spec.lower, abs=1e-12)
        assert float(lim.get("upper")) == pytest.approx(spec.upper, abs=1e-12)
        assert float(lim.get("velocity")) == pytest.approx(spec.max_velocity)
        assert float(lim.get("effort")) > 0
        assert np.linalg.norm(_floats(j.find("axis").get("xyz"), "")) == pytest.approx(1.0)


def test_urdf_forward_kinematics_matches_mujoco(arm):
    emb, model, text = arm
    tree = UrdfTree(text)
    data = mujoco.MjData(model)
    qadr = [model.joint(n).qposadr[0] for n in emb.joint_names]
    site = model.site(emb.ee_link).id
    bodies = [n for n in tree.links if n not in (emb.base_frame, emb.ee_link)]
    rng = np.random.default_rng(0)
    tips = []
    for _ in range(N_CONFIGS):
        q = rng.uniform(emb.lower, emb.upper)
        data.qpos[:] = model.qpos0
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        poses = tree.fk(dict(zip(emb.joint_names, q)))
        ee = poses[emb.ee_link]
        err = np.linalg.norm(ee[:3, 3] - data.site_xpos[site])
        tips.append(ee[:3, 3])
        assert err < POS_TOL, f"{emb.name} tool tip off by {err:.2e} m at q={q}"
        np.testing.assert_allclose(ee[:3, :3], data.site_xmat[site].reshape(3, 3), atol=ROT_TOL)
        for name in bodies:  # every link frame is its MuJoCo body frame
            b = model.body(name).id
            np.testing.assert_allclose(poses[name][:3, 3], data.xpos[b], atol=POS_TOL)
            np.testing.assert_allclose(poses[name][:3, :3], data.xmat[b].reshape(3, 3),
                                       atol=ROT_TOL)
    # The configurations spread the tip over the workspace (not a trivially static chain).
    assert np.ptp(np.array(tips), axis=0).min() > 0.1


def test_chunk_marker_kinematics_agree(arm, tmp_path):
    """The project's URDF chain FK (chunk markers on real robots) reads the generated URDF."""
    from ate_ros.core.viz.ee_kinematics import SimKinematics, UrdfChain

    emb, _, text = arm
    path = tmp_path / f"{emb.name}.urdf"
    path.write_text(text)
    chain = UrdfChain(path, emb.base_frame, emb.ee_link, emb.joint_names)
    from_text = UrdfChain(text, emb.base_frame, emb.ee_link, emb.joint_names)
    qs = np.random.default_rng(1).uniform(emb.lower, emb.upper, (5, emb.dof))
    np.testing.assert_allclose(chain.ee_positions(qs), SimKinematics(emb).ee_positions(qs),
                               atol=POS_TOL)
    # A robot_description string works as well as a file.
    np.testing.assert_allclose(from_text.ee_positions(qs), chain.ee_positions(qs), atol=1e-12)


def test_joint_off_body_origin_and_unsupported_joints():
    """A hinge away from its body origin still gives the right FK; ball joints are refused."""
    from ate_ros.core.embodiment import Embodiment, JointSpec

    emb = Embodiment(name="toy", base_frame="world", ee_link="tip", joints=[
        JointSpec(name="a", slot=0, lower=-1.0, upper=1.0, max_velocity=1.0),
        JointSpec(name="b", slot=1, lower=-2.0, upper=0.5, max_velocity=1.0)])
    xml = """<mujoco><worldbody>
      <body name="l1" pos="0.1 0 0.2" quat="0.9 0.1 0.3 0.2">
        <joint name="a" axis="1 1 0" pos="0.05 -0.02 0.1" range="-1 1"/>
        <geom type="box" size="0.02 0.03 0.04"/>
        <body name="l2" pos="0 0.3 0" euler="0.3 0 1">
          <joint name="b" axis="0 0 1" pos="0 0.1 0" range="-2 0.5"/>
          <geom type="ellipsoid" size="0.02 0.03 0.04"/>
          <site name="tip" pos="0.1 0.2 0.3" euler="1 0 0"/>
        </body></body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    tree = UrdfTree(urdf_from_model(model, emb))
    data = mujoco.MjData(model)
    for q in np.random.default_rng(2).uniform(emb.lower, emb.upper, (5, 2)):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        ee = tree.fk({"a": q[0], "b": q[1]})["tip"]
        np.testing.assert_allclose(ee[:3, 3], data.site_xpos[0], atol=POS_TOL)
        np.testing.assert_allclose(ee[:3, :3], data.site_xmat[0].reshape(3, 3), atol=ROT_TOL)

    ball = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><joint name="a" type="ball"/><geom size="0.1"/></body>'
        '</worldbody></mujoco>')
    one = Embodiment(name="toy1", joints=emb.joints[:1])
    with pytest.raises(UrdfExportError, match="ball or free"):
        urdf_from_model(ball, one)


def test_rviz_config_shows_the_generated_robot():
    """config/ate.rviz: Fixed Frame is the URDF root (= the chunk markers' frame) and the
    RobotModel display reads the latched /robot_description."""

    import yaml

    rviz = yaml.safe_load((ROOT / "config" / "ate.rviz")
                          .read_text())
    manager = rviz["Visualization Manager"]
    roots = {UrdfTree(build_urdf(name)).roots[0] for name in SIM_EMBODIMENTS}
    frames = {load_embodiment(name).base_frame for name in SIM_EMBODIMENTS}
    assert roots == frames == {manager["Global Options"]["Fixed Frame"]}
    model = next(d for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/RobotModel")
    assert model["Enabled"] and model["Description Source"] == "Topic"
    topic = model["Description Topic"]
    assert topic["Value"] == "/robot_description"
    assert topic["Durability Policy"] == "Transient Local"
    assert topic["Reliability Policy"] == "Reliable"
