"""Chunk visualisation: forward kinematics, colours, history, PNG rendering, RViz markers."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.viz.chunk_paths import (
    NS_EXECUTED,
    NS_HISTORY,
    NS_LATEST,
    NS_SAMPLES,
    ChunkHistory,
    ChunkVizConfig,
    age_alpha,
    render_png,
    time_colors,
)
from ate_ros.core.viz.ee_kinematics import (
    JointSpaceProjection,
    KinematicsError,
    UrdfChain,
    load_kinematics,
)

# A planar 2-link arm: yaw joint at the base, both links 0.5 m along x, rotations about z,
# a fixed tool offset of 0.1 m and a prismatic z lift between base and shoulder.
URDF = """<robot name="planar">
  <link name="base"/><link name="lift"/><link name="l1"/><link name="l2"/><link name="tool"/>
  <joint name="z" type="prismatic"><parent link="base"/><child link="lift"/>
    <axis xyz="0 0 1"/><limit lower="0" upper="1" effort="1" velocity="1"/></joint>
  <joint name="j1" type="revolute"><parent link="lift"/><child link="l1"/>
    <origin xyz="0 0 0.2" rpy="0 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="j2" type="continuous"><parent link="l1"/><child link="l2"/>
    <origin xyz="0.5 0 0"/><axis xyz="0 0 1"/></joint>
  <joint name="tip" type="fixed"><parent link="l2"/><child link="tool"/>
    <origin xyz="0.6 0 0"/></joint>
</robot>"""


def planar_fk(z, a1, a2):
    x = 0.5 * np.cos(a1) + 0.6 * np.cos(a1 + a2)
    y = 0.5 * np.sin(a1) + 0.6 * np.sin(a1 + a2)
    return np.array([x, y, 0.2 + z])


@pytest.fixture
def planar(tmp_path):
    path = tmp_path / "planar.urdf"
    path.write_text(URDF)
    emb = Embodiment(name="planar", joints=[
        JointSpec("z", 0, 0.0, 1.0), JointSpec("j1", 1, -3, 3), JointSpec("j2", 2, -3, 3)],
        urdf=str(path), ee_link="tool", base_frame="base")
    return emb


def test_urdf_chain_matches_hand_fk(planar):
    fk = load_kinematics(planar)
    assert isinstance(fk, UrdfChain) and fk.frame == "base" and fk.metric
    rng = np.random.default_rng(0)
    qs = rng.uniform([0, -3, -3], [1, 3, 3], size=(20, 3))
    got = fk.ee_positions(qs)
    want = np.array([planar_fk(*q) for q in qs])
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_urdf_chain_errors(planar):
    with pytest.raises(KinematicsError, match="not a link"):
        UrdfChain(planar.urdf, "base", "nope", planar.joint_names)
    with pytest.raises(KinematicsError, match="not below"):
        UrdfChain(planar.urdf, "tool", "base", planar.joint_names)


def test_joint_space_fallback(small_embodiment):
    fk = load_kinematics(small_embodiment, "joints")
    assert isinstance(fk, JointSpaceProjection) and not fk.metric
    np.testing.assert_allclose(fk.ee_positions(np.array([[1.0, 2.0, 3.0]])), [[1, 2, 3]])


def test_colors_and_alpha():
    c = time_colors(5, alpha=0.5)
    assert c.shape == (5, 4) and np.all((c >= 0) & (c <= 1)) and np.all(c[:, 3] == 0.5)
    assert not np.allclose(c[0], c[-1])  # start and end differ
    assert age_alpha(0, 5, 0.1) == 1.0
    assert age_alpha(5, 5, 0.1) == pytest.approx(0.1)
    assert 0.1 < age_alpha(2, 5, 0.1) < 1.0


def test_history_polylines(planar):
    hist = ChunkHistory(load_kinematics(planar), ChunkVizConfig(history=2))
    chunk = np.stack([np.zeros(8), np.linspace(0, 1, 8), np.zeros(8)], axis=1)
    for k in range(4):
        hist.add_chunk(chunk + 0.1 * k, samples=[chunk - 0.1])
        hist.add_executed(chunk[0] + 0.1 * k)
    lines = hist.polylines()
    ns = [p.ns for p in lines]
    assert ns.count(NS_LATEST) == 1 and ns.count(NS_HISTORY) == 2  # history bounded
    assert ns.count(NS_SAMPLES) == 3 and ns.count(NS_EXECUTED) == 1
    latest = lines[0]
    np.testing.assert_allclose(latest.points[-1], planar_fk(0.3, 1.3, 0.3), atol=1e-9)
    alphas = [p.colors[0, 3] for p in lines if p.ns in (NS_LATEST, NS_HISTORY)]
    assert alphas == sorted(alphas, reverse=True)  # older chunks fade
    sample_w = [p.width for p in lines if p.ns == NS_SAMPLES][0]
    assert sample_w < latest.width  # samples are thinner


def test_render_png_not_empty(planar, tmp_path):
    hist = ChunkHistory(load_kinematics(planar))
    t = np.linspace(0, 1, 16)
    hist.add_chunk(np.stack([t * 0.2, t, -t], 1), samples=[np.stack([t * 0.1, t, t], 1)])
    hist.add_executed_path(np.stack([np.zeros(10), np.linspace(-1, 0, 10), np.zeros(10)], 1))
    out = render_png(hist.polylines(), tmp_path / "chunks.png", title="test")
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[0] > 100 and img.shape[1] > 300
    rgb = img[..., :3]
    # Coloured (non-grey) pixels exist: the paths were drawn.
    assert (np.ptp(rgb, axis=2) > 0.3).sum() > 100


@pytest.mark.ros
def test_markers(planar):
    pytest.importorskip("rclpy")
    from visualization_msgs.msg import Marker

    from ate_ros.nodes.visualization import polylines_to_markers

    hist = ChunkHistory(load_kinematics(planar))
    hist.add_chunk(np.stack([np.zeros(5), np.linspace(0, 1, 5), np.zeros(5)], 1))
    arr = polylines_to_markers(hist.polylines(), hist.frame)
    assert arr.markers[0].action == Marker.DELETEALL
    strip = [m for m in arr.markers if m.type == Marker.LINE_STRIP]
    assert len(strip) == 1 and len(strip[0].points) == 5 and len(strip[0].colors) == 5
    assert strip[0].header.frame_id == "base" and strip[0].ns == NS_LATEST


def _nonempty_png(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    return (np.ptp(img[..., :3], axis=2) > 0.3).sum() > 100


def test_plot_chunks_dataset(planar, tmp_path):
    from ate_ros.cli import main
    from ate_ros.core.data.episode_format import Episode, write_episode

    (tmp_path / "ds" / "train").mkdir(parents=True)
    planar.to_yaml(tmp_path / "ds" / "embodiment.yaml")
    t = np.linspace(0, 1, 40)
    q = np.stack([0.1 * t, np.sin(3 * t), np.cos(2 * t)], 1)
    write_episode(tmp_path / "ds" / "train" / "ep0.hdf5",
                  Episode(qpos=q, action=np.roll(q, -1, 0), embodiment="planar",
                          joint_names=planar.joint_names, rate_hz=10.0))
    out = tmp_path / "ds.png"
    assert main(["plot-chunks", str(tmp_path / "ds"), "-o", str(out), "--horizon", "8"]) == 0
    assert _nonempty_png(out)


LEGACY_ACTION_CHUNK = """std_msgs/Header header
string embodiment
string model_id
trajectory_msgs/JointTrajectory trajectory
float32 inference_latency
float32 ood_score
trajectory_msgs/JointTrajectory[] samples
"""
"""ate_ros/ActionChunk as bags recorded before the flat layout define it."""


@pytest.mark.parametrize("layout", ["flat", "legacy"])
def test_plot_chunks_bag(planar, tmp_path, layout):
    """plot-chunks reads chunks (and their samples) from a bag, in the current flat layout and
    in the legacy JointTrajectory one (rosbags decodes a bag with the definitions stored in
    it)."""
    pytest.importorskip("rosbags")
    from argparse import Namespace

    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from ate_ros.cli import main
    from ate_ros.commands.plot_chunks import load_bag
    from ate_ros.core.data.typestores import make_typestore

    if layout == "flat":
        store = make_typestore()
    else:
        store = get_typestore(Stores.ROS2_KILTED)
        store.register(get_types_from_msg(LEGACY_ACTION_CHUNK, "ate_ros/msg/ActionChunk"))
    T = store.types
    bag = tmp_path / "bag"
    written = []
    with Writer(bag, version=9) as w:
        ca = w.add_connection("/action_chunk", "ate_ros/msg/ActionChunk", typestore=store)
        cj = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=store)
        stamp = T["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
        header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="base")
        Dur = T["builtin_interfaces/msg/Duration"]
        Pt = T["trajectory_msgs/msg/JointTrajectoryPoint"]
        order = [2, 0, 1]  # the message's joint order differs from the embodiment's
        names = [planar.joint_names[i] for i in order]
        for k in range(4):
            chunk = np.stack([np.full(8, 0.1), 0.2 * np.arange(8) + 0.1 * k, np.full(8, 0.3)], 1)
            written.append(chunk)
            cols = chunk[:, order]
            if layout == "flat":
                msg = T["ate_ros/msg/ActionChunk"](
                    header=header, embodiment="planar", model_id="m", joint_names=names,
                    dt=0.1, positions=cols.ravel(), inference_latency=0.01,
                    ood_score=float("nan"), samples=(cols + 1).ravel(), takeover_index=0)
            else:
                def traj(c):
                    pts = [Pt(positions=np.ascontiguousarray(row), velocities=np.array([]),
                              accelerations=np.array([]), effort=np.array([]),
                              time_from_start=Dur(sec=0, nanosec=100_000_000 * (i + 1)))
                           for i, row in enumerate(c)]
                    return T["trajectory_msgs/msg/JointTrajectory"](header=header,
                                                                   joint_names=names, points=pts)

                msg = T["ate_ros/msg/ActionChunk"](header=header, embodiment="planar",
                                                  model_id="m", trajectory=traj(cols),
                                                  inference_latency=0.01,
                                                  ood_score=float("nan"), samples=[traj(cols + 1)])
            w.write(ca, (k + 1) * 10**9, store.serialize_cdr(msg, msg.__msgtype__))
            js = T["sensor_msgs/msg/JointState"](header=header, name=planar.joint_names,
                                                position=np.array([0.1, 0.1 * k, 0.3]),
                                                velocity=np.array([]), effort=np.array([]))
            w.write(cj, (k + 1) * 10**9 + 1, store.serialize_cdr(js, js.__msgtype__))
    emb_yaml = _yaml(planar, tmp_path)
    _, chunks, qs, _ = load_bag(Namespace(source=str(bag), topic="", embodiment=emb_yaml,
                                          chunks=4))
    assert len(chunks) == 4 and qs.shape == (4, 3)
    for (got, samples), want in zip(chunks, written):
        np.testing.assert_allclose(got, want)  # back in the embodiment's joint order
        assert len(samples) == 1
        np.testing.assert_allclose(samples[0], want + 1)
    out = tmp_path / "bag.png"
    assert main(["plot-chunks", str(bag), "-o", str(out), "--embodiment", emb_yaml]) == 0
    assert _nonempty_png(out)


def _yaml(emb, tmp_path):
    path = tmp_path / "planar_emb.yaml"
    emb.to_yaml(path)
    return str(path)
