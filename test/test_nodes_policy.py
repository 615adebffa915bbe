"""policy_node over real DDS: lifecycle without leaks, stale observations, RunPolicy + cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from waiting import wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


class TowardTarget:
    """Test double: moves every joint 0.05 per step toward +0.5 (counts its calls)."""

    chunk_size = 8

    def __init__(self, emb):
        self.emb = emb
        self.camera_names = []
        self.calls = 0

    def predict_chunk(self, obs, num_steps=None, seed=None):
        self.calls += 1
        q = obs.qpos[self.emb.slots].astype(np.float64)
        steps = np.arange(1, self.chunk_size + 1)[:, None]
        path = q + np.clip(0.5 - q, -0.05 * steps, 0.05 * steps)
        return self.emb.to_unified(path.astype(np.float32))


@pytest.fixture
def graph(small_embodiment, tmp_path):
    """A context with a spinning executor; yields a factory for policy nodes and a peer."""
    from rclpy.executors import MultiThreadedExecutor

    path = tmp_path / "toy3.yaml"
    small_embodiment.to_yaml(path)
    context = rclpy.Context()
    rclpy.init(context=context)
    ex = MultiThreadedExecutor(num_threads=3, context=context)
    peer = rclpy.create_node("peer", context=context)
    ex.add_node(peer)
    made = []

    def make(**cfg):
        from ate_ros.core.deploy import PolicyNodeConfig
        from ate_ros.nodes.policy_node import PolicyNode

        cfg.setdefault("kinematics", "joints")
        node = PolicyNode(PolicyNodeConfig(embodiment=str(path), **cfg),
                          policy_factory=lambda c, e: TowardTarget(e), context=context)
        ex.add_node(node)
        made.append(node)
        return node

    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    yield make, peer, small_embodiment
    ex.shutdown()
    th.join(timeout=5)
    for n in made:
        n._stop_worker()
        n.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)


def observation(peer, emb, q, age=0.0):
    from ate_ros.ros import conversions as conv

    now = peer.get_clock().now().nanoseconds * 1e-9
    return conv.observation_to_msg({}, emb.joint_names, np.asarray(q), conv.sec_to_time(now - age),
                                   "reach")


def entity_counts(node):
    return (len(list(node.publishers)), len(list(node.subscriptions)), len(list(node.timers)),
            len(list(node.waitables)), len(list(node.services)), threading.active_count())


def test_lifecycle_cycles_do_not_leak(graph):
    make, _, _ = graph
    node = make()
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node.trigger_configure()
    node.trigger_activate()
    node.trigger_deactivate()
    node.trigger_cleanup()
    before = entity_counts(node)
    for _ in range(20):
        assert node.trigger_configure() == R.SUCCESS
        assert node.trigger_activate() == R.SUCCESS
        assert node._worker is not None and node._worker.is_alive()
        assert node.trigger_deactivate() == R.SUCCESS
        assert node.trigger_cleanup() == R.SUCCESS
        assert node.policy is None and node._chunk_pub is None
    assert entity_counts(node) == before


def test_chunks_and_stale_observations(graph):
    from ate_ros.msg import ActionChunk, Observation
    from ate_ros.ros import conversions as conv

    make, peer, emb = graph
    node = make(max_obs_age=0.5)
    node.trigger_configure()
    node.trigger_activate()
    got = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    pub = peer.create_publisher(Observation, "observation", 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0, 20.0)
    stale = observation(peer, emb, [0.0, 0.1, 0.2], age=3.0)
    pub.publish(stale)
    assert wait_for(lambda: node.refused_stale >= 1, 20.0)
    time.sleep(0.2)
    assert not got and node.chunks == 0
    fresh = observation(peer, emb, [0.0, 0.1, 0.2])
    assert wait_for(lambda: (pub.publish(fresh), bool(got))[1], 20.0)
    msg = got[0]
    assert msg.header.stamp == fresh.header.stamp  # stamped with the observation time
    chunk, _ = conv.msg_to_chunk(msg, emb)
    np.testing.assert_allclose(chunk[0], [0.05, 0.15, 0.25], atol=1e-6)
    assert len(chunk) == 8 and np.isnan(msg.ood_score) and msg.inference_latency >= 0
    node.trigger_deactivate()
    n = len(got)
    pub.publish(observation(peer, emb, [0.0, 0.1, 0.2]))
    time.sleep(0.3)
    # Deactivation published one hold chunk, then nothing more.
    assert len(got) <= n + 1 and all("hold" in m.model_id for m in got[n:])


def test_run_policy_feedback_and_cancel_holds(graph):
    from rclpy.action import ActionClient

    from ate_ros.action import RunPolicy
    from ate_ros.msg import ActionChunk, Observation
    from ate_ros.ros import conversions as conv

    make, peer, emb = graph
    node = make(require_goal=True)
    node.trigger_configure()
    node.trigger_activate()
    got, feedback = [], []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    pub = peer.create_publisher(Observation, "observation", 10)
    q = [0.0, 0.1, 0.2]
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            pub.publish(observation(peer, emb, q))
            stop.wait(0.05)

    threading.Thread(target=stream, daemon=True).start()
    time.sleep(0.3)
    assert not got  # require_goal: nothing without a goal
    client = ActionClient(peer, RunPolicy, "run_policy")
    assert client.wait_for_server(timeout_sec=30.0)
    goal_fut = client.send_goal_async(RunPolicy.Goal(instruction="wave", max_duration=0.0),
                                      feedback_callback=lambda f: feedback.append(f.feedback))
    assert wait_for(goal_fut.done, 20.0)
    handle = goal_fut.result()
    assert handle.accepted
    assert wait_for(lambda: len(got) >= 3 and feedback, 20.0)
    assert feedback[-1].chunks >= 1 and np.isnan(feedback[-1].ood_score)
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    result_fut = handle.get_result_async()
    assert wait_for(result_fut.done, 20.0)
    assert result_fut.result().result.outcome == RunPolicy.Result.CANCELED
    time.sleep(0.3)
    n = len(got)
    time.sleep(0.4)
    stop.set()
    assert len(got) == n  # no chunks after the cancel
    hold = [m for m in got if "hold" in m.model_id]
    assert hold, "cancel must publish a hold chunk"
    chunk, _ = conv.msg_to_chunk(hold[-1], emb)
    np.testing.assert_allclose(chunk, np.tile(q, (len(chunk), 1)))
    client.destroy()
