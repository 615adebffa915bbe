"""configure / activate / deactivate / cleanup, 20 times, for perception, policy and executor:
every transition succeeds, nothing leaks (publishers, subscriptions, timers, threads), outputs
run only while active, and a deactivated executor brakes to a hold once, then sends nothing."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support.waiting import Spinner, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

CYCLES = 20


def entity_counts(node) -> tuple:
    threads = [t for t in threading.enumerate() if not t.name.startswith("ThreadPoolExecutor")]
    return (len(list(node.publishers)), len(list(node.subscriptions)), len(list(node.timers)),
            len(list(node.waitables)), len(list(node.services)), len(threads))


def make_node(kind: str, tmp_path, small_embodiment, camera_embodiment, context):
    if kind == "perception":
        from ate_ros.core.deploy import PerceptionConfig
        from ate_ros.nodes.perception_node import PerceptionNode

        camera_embodiment.to_yaml(tmp_path / "cam2.yaml")
        return PerceptionNode(PerceptionConfig(embodiment=str(tmp_path / "cam2.yaml"),
                                               rate_hz=20.0), context=context)
    if kind == "policy":
        from ate_ros.core.deploy import PolicyNodeConfig
        from ate_ros.nodes.policy_node import PolicyNode

        small_embodiment.to_yaml(tmp_path / "toy3.yaml")
        return PolicyNode(PolicyNodeConfig(embodiment=str(tmp_path / "toy3.yaml"),
                                           policy="hold", kinematics="joints"), context=context)
    from ate_ros.core.execution import ExecutorNodeConfig
    from ate_ros.nodes.executor_node import ExecutorNode

    return ExecutorNode(ExecutorNodeConfig(embodiment="toy3", output="topic"),
                        embodiment=small_embodiment, context=context)


@pytest.fixture(params=["perception", "policy", "executor"])
def spun_node(request, tmp_path, small_embodiment, camera_embodiment):
    """Each lifecycle node, unconfigured, spun on a context of its own."""
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = make_node(request.param, tmp_path, small_embodiment, camera_embodiment, context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    spinner = Spinner(ex)
    yield node
    spinner.close()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def test_transitions_twenty_times_without_leaks(spun_node):
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = spun_node
    assert node.trigger_configure() == R.SUCCESS
    assert node.trigger_cleanup() == R.SUCCESS
    before = entity_counts(node)
    for _ in range(CYCLES):
        assert node.trigger_configure() == R.SUCCESS
        configured = entity_counts(node)
        assert configured[:2] > before[:2]  # its inputs and outputs exist now
        assert node.trigger_activate() == R.SUCCESS
        assert node.trigger_deactivate() == R.SUCCESS
        assert entity_counts(node) == configured  # the active-only timers are gone
        assert node.trigger_cleanup() == R.SUCCESS
        assert entity_counts(node) == before


def test_shutdown_while_active_releases_everything(spun_node):
    """Shutdown from active (the lifecycle base): the node's own work stops (the policy's
    inference thread, the executor's tick) and what configure created is gone."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = spun_node
    assert node.trigger_configure() == R.SUCCESS
    assert node.trigger_cleanup() == R.SUCCESS
    before = entity_counts(node)
    assert node.trigger_configure() == R.SUCCESS
    assert node.trigger_activate() == R.SUCCESS
    assert entity_counts(node) != before
    assert node.trigger_shutdown() == R.SUCCESS
    assert entity_counts(node) == before  # subscriptions, publishers, timers, threads


def test_executor_streams_only_while_active_and_brakes_on_deactivate(small_embodiment):
    """Inactive: no tick. Active: a trajectory per tick. Deactivated while moving: the last
    trajectory brakes to rest, and the tick stops."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from ate_ros.core.execution import ExecutionConfig, ExecutorNodeConfig
    from ate_ros.msg import ActionChunk
    from ate_ros.nodes.executor_node import ExecutorNode
    from ate_ros.ros.conversions import chunk_to_msg, duration_to_sec, sec_to_time
    from ate_ros.ros.qos import COMMAND_QOS

    emb = small_embodiment
    context = rclpy.Context()
    rclpy.init(context=context)
    node = ExecutorNode(ExecutorNodeConfig(embodiment="toy3", controller="ctrl",
                                           execution=ExecutionConfig(watchdog_timeout=5.0)),
                        embodiment=emb, context=context)
    peer = rclpy.create_node("peer", context=context)
    got: list[JointTrajectory] = []
    peer.create_subscription(JointTrajectory, "ctrl/joint_trajectory", got.append, COMMAND_QOS)
    js = peer.create_publisher(JointState, "joint_states", 10)
    chunks = peer.create_publisher(ActionChunk, "action_chunk", COMMAND_QOS)
    peer.create_timer(0.02, lambda: js.publish(JointState(name=emb.joint_names,
                                                          position=[0.0] * emb.dof)))
    ex, peer_ex = SingleThreadedExecutor(context=context), SingleThreadedExecutor(context=context)
    ex.add_node(node)
    peer_ex.add_node(peer)
    spinners = [Spinner(ex), Spinner(peer_ex)]
    try:
        assert node.trigger_configure() == R.SUCCESS
        assert wait_for(lambda: node.core.measured is not None, 20.0)
        assert node._timer is None and node.scheduler.stats.commands == 0  # inactive
        assert node.trigger_activate() == R.SUCCESS
        assert wait_for(lambda: chunks.get_subscription_count() > 0, 20.0)

        def now() -> float:
            return peer.get_clock().now().nanoseconds * 1e-9

        ramp = np.linspace(0.02, 1.5, 60)[:, None] * np.ones(emb.dof)
        chunks.publish(chunk_to_msg(ramp, emb, sec_to_time(now())))
        assert wait_for(lambda: node.scheduler.moving, 20.0)
        assert node.trigger_deactivate() == R.SUCCESS
        last = node.core.counts["trajectories_sent"]
        assert wait_for(lambda: len(got) == last, 20.0)  # every trajectory arrived
        brake = got[-1]
        pos = np.array([p.positions for p in brake.points])
        times = [duration_to_sec(p.time_from_start) for p in brake.points]
        assert len(pos) >= 2 and np.abs(pos[-1] - pos[-2]).max() < 1e-12  # ends at rest
        assert np.abs(pos[-1] - ramp[-1]).max() > 0.5 and times == sorted(times)
        assert node._timer is None  # no tick runs: nothing is sent after the brake
    finally:
        for s in spinners:
            s.close()
        node.destroy_node()
        peer.destroy_node()
        rclpy.try_shutdown(context=context)
