"""The low-dimensional environment state through the ROS graph and through bags.

``ate_ros/EnvironmentState`` conversions; the sim's bags carry the rollout's environment state
and bag2dataset stores it in the episodes (bags without it convert as before); sim_robot_node
publishes it with the stamp of its joint_states, and SensorInputs requires it (fresh) for a
policy that reads one; a tiny low-dim VLA policy closes the loop through the graph.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.waiting import Spinner, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ate_ros.ros import conversions as conv  # noqa: E402  (needs the generated messages)

NAMES = ["red/present", "red/dx", "red/dy"]


# ----- conversions ------------------------------------------------------------------------
def test_env_state_msg_round_trip_and_errors():
    v = np.array([1.0, -0.25, 0.5], np.float32)
    msg = conv.env_state_to_msg(v, NAMES, conv.sec_to_time(3.5), "base")
    assert conv.time_to_sec(msg.header.stamp) == 3.5 and msg.header.frame_id == "base"
    names, back = conv.msg_to_env_state(msg, dim=3)
    assert names == NAMES and back.dtype == np.float32
    np.testing.assert_array_equal(back, v)
    with pytest.raises(conv.ConversionError, match="the policy reads 4"):
        conv.msg_to_env_state(msg, dim=4)
    with pytest.raises(conv.ConversionError, match="3 names but values of shape"):
        conv.env_state_to_msg(v[:2], NAMES)
    with pytest.raises(conv.ConversionError, match="non-finite"):
        conv.env_state_to_msg(np.array([np.nan, 0, 0]), NAMES)
    msg.names = NAMES[:2]
    with pytest.raises(conv.ConversionError, match="2 names"):
        conv.msg_to_env_state(msg)


def test_observation_carries_env_state(small_embodiment):
    emb = small_embodiment
    q = np.arange(emb.dof, dtype=np.float64)
    stamp = conv.sec_to_time(2.0)
    plain = conv.observation_to_msg({}, emb.joint_names, q, stamp)
    assert conv.observation_env_state(plain) is None
    assert conv.msg_to_policy_observation(plain, emb).env_state is None
    with pytest.raises(conv.ConversionError, match="no environment state"):
        conv.msg_to_policy_observation(plain, emb, env_state_dim=3)
    v = np.array([1.0, 0.1, -0.2], np.float32)
    msg = conv.observation_to_msg({}, emb.joint_names, q, stamp, env_state=v,
                                  env_state_names=NAMES)
    names, back = conv.observation_env_state(msg)
    assert names == NAMES
    np.testing.assert_array_equal(back, v)
    obs = conv.msg_to_policy_observation(msg, emb, env_state_dim=3)
    np.testing.assert_array_equal(obs.env_state, v)
    with pytest.raises(conv.ConversionError, match="has 3 values, the policy reads 5"):
        conv.msg_to_policy_observation(msg, emb, env_state_dim=5)


# ----- bags -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rollout():
    pytest.importorskip("mujoco")
    from ate_ros.core.sim.env import SimEnv
    from ate_ros.core.sim.experts import ScriptedExpert
    from ate_ros.core.sim.recording import rollout_expert

    env = SimEnv("sim_arm7", "reach", seed=0)
    try:
        ro = rollout_expert(env, ScriptedExpert(env, seed=1), seed=3, state_rate_hz=50.0)
        return ro, env.embodiment
    finally:
        env.close()


def _convert(bag, emb, out):
    from ate_ros.core.data.convert import convert_bags
    from ate_ros.core.data.episode_format import read_episode

    manifest = convert_bags([bag], emb, out)
    assert len(manifest.episodes) == 1, manifest.bags
    return manifest, read_episode(out / manifest.episodes[0]["file"])


def test_bag_env_state_converts_to_the_rollouts(rollout, tmp_path):
    from ate_ros.core.sim.object_labels import ENV_STATE_DIM, ENV_STATE_NAMES
    from ate_ros.core.sim.recording import BAG_EPOCH_NS, write_rollout_bag

    ro, emb = rollout
    assert ro.env_state.shape == (len(ro), ENV_STATE_DIM)
    bag = write_rollout_bag(tmp_path / "bag", ro, emb, "reach")
    manifest, ep = _convert(bag, emb, tmp_path / "ds")
    topic = manifest.bags[0]["topics"]["/environment_state"]
    assert topic["role"] == "environment_state" and topic["read"] == len(ro)
    assert ep.env_state_names == list(ENV_STATE_NAMES)
    # Episode ticks are on the bag clock (epoch + sim time); each takes the tick's state.
    tick = np.rint((ep.timestamps - BAG_EPOCH_NS / 1e9 - ro.times[0]) * emb.control_rate_hz)
    np.testing.assert_array_equal(ep.env_state, ro.env_state[tick.astype(int)])

    # Without the topic the bag converts exactly as before: no environment state.
    ro.env_state, kept = None, ro.env_state
    try:
        bag2 = write_rollout_bag(tmp_path / "bag2", ro, emb, "reach")
    finally:
        ro.env_state = kept
    manifest2, ep2 = _convert(bag2, emb, tmp_path / "ds2")
    assert ep2.env_state is None and ep2.env_state_names == []
    assert "/environment_state" not in manifest2.bags[0]["topics"]
    np.testing.assert_array_equal(ep2.qpos, ep.qpos)
    np.testing.assert_array_equal(ep2.action, ep.action)
    np.testing.assert_array_equal(ep2.timestamps, ep.timestamps)


# ----- DDS --------------------------------------------------------------------------------
@pytest.fixture
def ros():
    from ate_ros.ros.spin import DrainingMultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    ex = DrainingMultiThreadedExecutor(num_threads=3, context=context)
    nodes: list = []

    def add(node):
        nodes.append(node)
        ex.add_node(node)
        return node

    spinner = Spinner(ex)
    yield context, add
    spinner.close()
    for n in reversed(nodes):
        n.destroy_node()
    rclpy.shutdown(context=context)


def _sensor_node(context, emb, name, dim, sim_time=False):
    from rclpy.parameter import Parameter

    from ate_ros.core.deploy import SensorInputsConfig
    from ate_ros.ros.sensor_inputs import SensorInputs

    node = rclpy.create_node(name, context=context, parameter_overrides=[
        Parameter("use_sim_time", Parameter.Type.BOOL, sim_time)])
    # Generous ages: a loaded 2-core machine may take a while between publishing and checking.
    return node, SensorInputs(node, emb, SensorInputsConfig(max_age=5.0, max_skew=0.2),
                              event_driven=False, env_state_dim=dim)


def test_sensor_inputs_require_a_fresh_env_state(ros, small_embodiment):
    """Missing, malformed and stale environment states keep observations back; a fresh one of
    the joints' stamp goes into the PolicyObservation."""
    from sensor_msgs.msg import JointState

    from ate_ros.msg import EnvironmentState

    context, add = ros
    emb = small_embodiment
    peer = add(rclpy.create_node("peer", context=context))
    node, inputs = _sensor_node(context, emb, "inputs", 3)
    add(node)
    assert any(t.endswith("/environment_state") for t in inputs.topics)
    js_pub = peer.create_publisher(JointState, "joint_states", 10)
    env_pub = peer.create_publisher(EnvironmentState, "environment_state", 10)
    assert wait_for(lambda: env_pub.get_subscription_count() and js_pub.get_subscription_count(),
                    10.0)

    def now() -> float:
        return node.get_clock().now().nanoseconds * 1e-9

    stamp = conv.sec_to_time(now())
    js_pub.publish(JointState(header=conv.Header(stamp=stamp), name=emb.joint_names,
                              position=[0.1] * emb.dof))
    assert wait_for(lambda: inputs.sync.received["joint_states"] == 1, 10.0)
    assert inputs.snapshot() is None and "environment_state" in inputs.last_refusal

    env_pub.publish(conv.env_state_to_msg(np.zeros(2), NAMES[:2], stamp))  # wrong width
    assert wait_for(lambda: inputs.bad_inputs == 1, 10.0)
    assert "policy reads 3" in inputs.last_refusal and inputs.snapshot() is None

    old = conv.sec_to_time(now() - 50.0)
    env_pub.publish(conv.env_state_to_msg(np.zeros(3), NAMES, old))
    assert wait_for(lambda: inputs.sync.refused.get("stale", 0) >= 1, 10.0)
    assert inputs.snapshot() is None

    v = np.array([1.0, 0.2, -0.3], np.float32)
    env_pub.publish(conv.env_state_to_msg(v, NAMES, stamp))
    # The malformed state was not taken (counted as malformed), the stale one was refused.
    assert wait_for(lambda: inputs.sync.received["environment_state"] == 2, 10.0)
    snap = inputs.snapshot()
    assert snap is not None and snap.env_state_names == tuple(NAMES)
    obs = inputs.policy_observation(snap)
    np.testing.assert_array_equal(obs.env_state, v)
    assert obs.stamp == pytest.approx(conv.time_to_sec(stamp))
    assert inputs.diagnostics()["environment_state_received"] == 2


def test_sim_robot_publishes_env_state_with_joint_states_stamp(ros):
    """sim_robot_node's environment_state reaches SensorInputs with the joints' stamp."""
    pytest.importorskip("mujoco")
    from ate_ros.core.deploy import SimRobotConfig
    from ate_ros.core.sim.object_labels import ENV_STATE_DIM, ENV_STATE_NAMES
    from ate_ros.nodes.sim_robot_node import SimRobotNode

    context, add = ros
    sim = add(SimRobotNode(SimRobotConfig(embodiment="sim_arm6", task="reach",
                                          real_time_factor=1.0, publish_robot_description=False),
                           context=context))
    node, inputs = _sensor_node(context, sim.embodiment, "inputs", ENV_STATE_DIM, sim_time=True)
    add(node)
    # Cameras are inputs too: a snapshot needs them all, with the joints' and the state's stamp.
    assert wait_for(lambda: inputs.snapshot() is not None, 30.0), inputs.last_refusal
    snap = inputs.snapshot()
    assert snap.env_state.shape == (ENV_STATE_DIM,)
    assert snap.env_state_names == tuple(ENV_STATE_NAMES)
    with inputs._lock:
        assert inputs.sync.stamp("environment_state") == inputs.sync.stamp("joint_states")
    sim.stop()


@pytest.mark.slow
def test_low_dim_policy_closes_the_loop(tmp_path):
    """A low-dim VLA policy (no cameras) runs in the graph: policy_node reads sim_robot_node's
    environment_state directly (sensors) and its chunks reach the simulated arm."""
    pytest.importorskip("mujoco")
    import torch
    from support.graph_harness import SpunGraph, run_args

    from ate_ros.core.embodiment import UNIFIED_DIM
    from ate_ros.core.normalization import NormStats
    from ate_ros.core.sim.object_labels import ENV_STATE_DIM
    from ate_ros.core.steer.policies import VLAConfig, VLAPolicy

    torch.manual_seed(0)
    policy = VLAPolicy(VLAConfig(
        chunk_size=4, camera_names=[], env_state_dim=ENV_STATE_DIM, action_mode="relative",
        d_model=32, n_heads=4,
        n_layers=1, ffn_dim=64, text_encoder="hash", text_dim=16, num_train_timesteps=20,
        num_inference_steps=2))

    def stats(d: int, std: float) -> NormStats:
        return NormStats(mean=np.zeros(d, np.float32), std=np.full(d, std, np.float32),
                         min=np.full(d, -1, np.float32), max=np.ones(d, np.float32))

    # Relative actions with tiny offsets: the untrained chunks stay next to the measured joints,
    # so the executor's start-deviation check accepts them.
    policy.set_norm_stats(stats(UNIFIED_DIM, 0.1), stats(UNIFIED_DIM, 0.005))
    policy.set_env_stats(stats(ENV_STATE_DIM, 0.1))
    policy.save_pretrained(tmp_path / "lowdim")

    g = SpunGraph()
    try:
        nodes = g.build(run_args(policy=str(tmp_path / "lowdim"), real_time_factor=2.0,
                                 observation_source="sensors"))
        g.bring_up()
        g.start()
        pol, ex_node = nodes["policy_node"], nodes["executor_node"]
        assert pol.inputs.env_state_dim == ENV_STATE_DIM
        assert wait_for(lambda: pol.chunks >= 3 and ex_node.core.stats.accepted >= 3, 60.0), (
            pol.chunks, ex_node.core.diagnostics(), pol.inputs.last_refusal, pol.errors)
        assert pol.errors == 0
    finally:
        g.close()
