"""perception_node over real DDS: synchronised, resized observations; stale inputs refused;
run-time parameter changes applied."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from support.waiting import wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


@pytest.fixture
def perception(camera_embodiment, red_centred_frame, tmp_path):
    """Yields a factory: ``make(**config)`` -> a spinning perception_node and a peer that
    publishes frames (``send(age)``: joint_states, then a red-centred image, both ``age`` s old)
    and collects the observations (``got``)."""
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from ate_ros.core.deploy import PerceptionConfig
    from ate_ros.msg import Observation
    from ate_ros.nodes.perception_node import PerceptionNode
    from ate_ros.ros import conversions as conv
    from ate_ros.ros.qos import LATCHED_QOS

    emb_yaml = tmp_path / "cam2.yaml"
    camera_embodiment.to_yaml(emb_yaml)
    context = rclpy.Context()
    rclpy.init(context=context)
    made: list = []
    ex = MultiThreadedExecutor(num_threads=2, context=context)

    def make(**cfg):
        compressed = cfg.get("compressed", False)
        node = PerceptionNode(PerceptionConfig(embodiment=str(emb_yaml), **cfg),
                              context=context)
        from rclpy.lifecycle import TransitionCallbackReturn as R

        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        peer = rclpy.create_node("peer", context=context)
        made.extend([node, peer])
        got: list = []
        peer.create_subscription(Observation, "observation", got.append, 10)
        img_type = conv.CompressedImage if compressed else conv.Image
        img_pub = peer.create_publisher(
            img_type, "wrist/image_raw" + ("/compressed" if compressed else ""), 10)
        js_pub = peer.create_publisher(JointState, "joint_states", 10)
        peer.create_publisher(String, "instruction", LATCHED_QOS).publish(
            String(data="pick the cube"))
        ex.add_node(node)
        ex.add_node(peer)
        frame = red_centred_frame
        last = [None]  # stamp (s) of the latest frame sent

        def send(age: float) -> None:
            stamp = conv.sec_to_time(peer.get_clock().now().nanoseconds * 1e-9 - age)
            last[0] = conv.time_to_sec(stamp)
            js_pub.publish(JointState(name=["b", "a", "gripper"], position=[0.2, 0.1, 9.0],
                                      header=conv.Header(stamp=stamp)))
            time.sleep(0.05)
            msg = (conv.numpy_to_compressed(frame, stamp, fmt="png") if compressed
                   else conv.numpy_to_image(frame, stamp))
            img_pub.publish(msg)

        def frames_handled() -> bool:
            """The latest frame sent has been handled to the end (taken and published, or
            refused); the depth-1 sensor queue may have replaced older ones unseen."""
            return node.inputs.last_image_done.get("wrist") == last[0]

        return SimpleNamespace(node=node, got=got, send=send, frames_handled=frames_handled)

    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        yield make
    finally:
        ex.shutdown()
        th.join(timeout=5)
        for n in made:
            n.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("compressed", [False, True])
def test_observation_and_staleness(perception, compressed):
    from ate_ros.ros import conversions as conv

    g = perception(rate_hz=0.0, max_age=0.5, compressed=compressed)
    node, got, send = g.node, g.got, g.send
    assert wait_for(lambda: node.inputs.instruction == "pick the cube", 10.0)
    assert wait_for(lambda: (send(0.0), bool(got))[1], 10.0)
    obs = got[-1]
    assert list(obs.camera_names) == ["wrist"]
    img = conv.image_to_numpy(obs.images[0])
    assert img.shape == (24, 32, 3) and img[..., 0].min() > 200 and img[..., 1].max() < 60
    assert list(obs.joint_names) == ["a", "b"]
    np.testing.assert_allclose(obs.joint_positions, [0.1, 0.2])
    assert obs.instruction == "pick the cube"
    assert wait_for(g.frames_handled, 10.0)  # frames sent while waiting arrived
    n = node.published
    refused0 = node.sync.refused.get("stale", 0)
    done0 = node.inputs.images_done.get("wrist", 0)
    for _ in range(3):
        send(2.0)  # two seconds old: refused
    assert wait_for(g.frames_handled, 10.0)
    handled = node.inputs.images_done["wrist"] - done0  # 3, unless the queue replaced some
    assert handled >= 1 and node.sync.refused.get("stale", 0) >= refused0 + handled
    assert node.published == n  # none of them became an observation
    assert "stale" in "".join(node.diagnostics.values()) or node.sync.refused["stale"] > 0


def test_runtime_parameter_changes_apply(perception):
    """``ros2 param set`` on max_age, instruction and rate_hz takes effect at once."""
    from rclpy.parameter import Parameter

    g = perception(rate_hz=0.0, max_age=1.0, max_skew=1.0)
    node, got, send = g.node, g.got, g.send
    assert wait_for(lambda: (send(0.3), bool(got))[1], 10.0)  # 0.3 s old: fresh enough
    assert node.set_parameters([Parameter("max_age", value=0.1),
                                Parameter("instruction", value="stack")])[0].successful
    refused0 = node.sync.refused.get("stale", 0)
    send(0.3)  # now too old
    assert wait_for(lambda: node.sync.refused.get("stale", 0) > refused0, 10.0)
    assert node.inputs.instruction == "stack"  # the default changed: it replaces the topic's
    # rate_hz 0 -> 20: observations on a timer, also without new frames (while fresh).
    assert node.set_parameters([Parameter("max_age", value=5.0),
                                Parameter("rate_hz", value=20.0)])[0].successful
    assert node.timer is not None and not node.inputs.event_driven
    send(0.0)
    assert wait_for(g.frames_handled, 10.0)
    n = node.published  # from here on no new frame: the timer publishes
    assert wait_for(lambda: node.published >= n + 4, 10.0)
    assert wait_for(lambda: got and got[-1].instruction == "stack", 10.0)
    # and back to one per frame: the timer is gone.
    assert node.set_parameters([Parameter("rate_hz", value=0.0)])[0].successful
    assert node.timer is None and node.inputs.event_driven
