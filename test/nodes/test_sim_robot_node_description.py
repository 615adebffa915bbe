"""sim_robot_node publishes the arm's URDF on the latched ``robot_description`` topic (real DDS).

A subscriber that joins after the node has published (what RViz's RobotModel display does) gets
the URDF through transient-local durability, and its movable joints are the joint_states names.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import pytest
from support.waiting import wait_for

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from std_msgs.msg import String  # noqa: E402

from ate_ros.core.deploy import SimRobotConfig  # noqa: E402
from ate_ros.ros.qos import LATCHED_QOS  # noqa: E402

pytestmark = [pytest.mark.ros]

EMBODIMENT = "sim_arm5"


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def make_sim(context, **overrides):
    from ate_ros.nodes.sim_robot_node import SimRobotNode

    # Paused and without /clock: only the start-up publications happen.
    cfg = SimRobotConfig(embodiment=EMBODIMENT, start_paused=True, publish_clock=False,
                         **overrides)
    return SimRobotNode(cfg, context=context)


def test_late_subscriber_receives_urdf(context):
    from rclpy.executors import SingleThreadedExecutor

    from ate_ros.core.embodiment import load_embodiment

    sim = make_sim(context)
    peer = rclpy.create_node("rviz_stand_in", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(sim)
    ex.add_node(peer)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        # Join after the node published once at construction.
        got: list[str] = []
        peer.create_subscription(String, "robot_description", lambda m: got.append(m.data),
                                 LATCHED_QOS)
        assert wait_for(lambda: got, 10.0), "late subscriber got no robot_description"
        assert got[0] == sim.robot_description
        robot = ET.fromstring(got[0])
        emb = load_embodiment(EMBODIMENT)
        movable = [j.get("name") for j in robot.findall("joint") if j.get("type") != "fixed"]
        assert movable == emb.joint_names
        assert robot.get("name") == EMBODIMENT
        assert sim.get_parameter("publish_robot_description").value is True
    finally:
        ex.shutdown()
        th.join(timeout=5)
        sim.destroy_node()
        peer.destroy_node()


def test_robot_description_can_be_switched_off(context):
    sim = make_sim(context, publish_robot_description=False)
    try:
        assert sim.robot_description_pub is None
        assert sim.count_publishers("robot_description") == 0
    finally:
        sim.destroy_node()
