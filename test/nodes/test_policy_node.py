"""policy_node over real DDS: lifecycle without leaks, stale observations, RunPolicy + cancel.

Every test runs twice: with the node on a MultiThreadedExecutor shared with the test's peer node
(as ``ate-ros run`` spins the graph) and with the node alone on a SingleThreadedExecutor (as its
own process spins it, ``policy_node.main``), where a blocking callback would stall everything.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from support.policy_node_graph import EXECUTORS, policy_node_graph
from support.waiting import action_client_beside, action_graph_report, wait_for

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


class TowardTarget:
    """Test double: moves every joint 0.05 per step toward +0.5 (counts its calls and resets)."""

    chunk_size = 8

    def __init__(self, emb):
        self.emb = emb
        self.camera_names = [c.name for c in emb.cameras]
        self.calls = 0
        self.resets = 0
        self.last = None  # the last observation

    def reset(self):
        """A stateful policy's history (LeRobot's observation queues) is cleared by it."""
        self.resets += 1

    def predict_chunk(self, obs, num_steps=None, seed=None):
        self.calls += 1
        self.last = obs
        q = obs.qpos[self.emb.slots].astype(np.float64)
        steps = np.arange(1, self.chunk_size + 1)[:, None]
        path = q + np.clip(0.5 - q, -0.05 * steps, 0.05 * steps)
        return self.emb.to_unified(path.astype(np.float32))


@pytest.fixture(params=EXECUTORS)
def graph(request, small_embodiment, tmp_path):
    """A context with spinning executors (:func:`support.policy_node_graph.policy_node_graph`);
    yields a factory for policy nodes running :class:`TowardTarget`, a peer and the
    embodiment."""
    from ate_ros.core.deploy import PolicyNodeConfig

    path = tmp_path / "toy3.yaml"
    small_embodiment.to_yaml(path)
    with policy_node_graph(request.param) as (make_node, peer):
        def make(**cfg):
            cfg.setdefault("kinematics", "joints")
            cfg.setdefault("embodiment", str(path))
            return make_node(PolicyNodeConfig(**cfg),
                             policy_factory=lambda c, e: TowardTarget(e))

        yield make, peer, small_embodiment


def observation(peer, emb, q, age=0.0):
    from ate_ros.ros import conversions as conv

    now = peer.get_clock().now().nanoseconds * 1e-9
    return conv.observation_to_msg({}, emb.joint_names, np.asarray(q), conv.sec_to_time(now - age),
                                   "reach")


def entity_counts(node):
    # The MultiThreadedExecutor starts its pool threads lazily, whenever it first has that much
    # work at once: they are not the node's and would make the count flaky.
    threads = [t for t in threading.enumerate() if not t.name.startswith("ThreadPoolExecutor")]
    return (len(list(node.publishers)), len(list(node.subscriptions)), len(list(node.timers)),
            len(list(node.waitables)), len(list(node.services)), len(threads))


@pytest.mark.parametrize("source", ["topic", "sensors"])
def test_lifecycle_cycles_do_not_leak(graph, source):
    make, _, _ = graph
    node = make(observation_source=source)
    from rclpy.lifecycle import TransitionCallbackReturn as R

    waitables = set(map(id, node.waitables))  # the action server among them
    node.trigger_configure()
    node.trigger_activate()
    node.trigger_deactivate()
    node.trigger_cleanup()
    before = entity_counts(node)

    def helpers() -> int:  # the inference thread's hidden node, in the graph
        return sum(n == "_policy_node_inputs" for n, _ in node.get_node_names_and_namespaces())

    assert wait_for(lambda: helpers() == 0, 5.0)
    for _ in range(20):
        assert node.trigger_configure() == R.SUCCESS
        assert node.trigger_activate() == R.SUCCESS
        assert node._inference.running and helpers() == 1
        assert node.trigger_deactivate() == R.SUCCESS
        assert not node._inference.running
        assert node.trigger_cleanup() == R.SUCCESS
        assert node.policy is None and node._chunk_pub is None and node._inference is None
    assert entity_counts(node) == before
    assert wait_for(lambda: helpers() == 0, 5.0)
    # No transition destroys a waitable: rclpy's executor can stop on one destroyed while
    # another thread builds its wait set (RCLError "action server pointer is invalid").
    assert set(map(id, node.waitables)) == waitables


def test_destroyed_node_leaves_no_action_server_in_the_graph(small_embodiment, tmp_path):
    """rclpy's destroy_node leaves waitables alone: a RunPolicy server left behind stays in the
    graph while the node object lives, and a half torn-down one makes a later client's
    wait_for_server fail (CI saw it at the first wait of a test)."""
    from ate_ros.core.deploy import PolicyNodeConfig
    from ate_ros.nodes.policy_node import PolicyNode

    path = tmp_path / "toy3.yaml"
    small_embodiment.to_yaml(path)
    contexts = [rclpy.Context(), rclpy.Context()]
    for c in contexts:
        rclpy.init(context=c)
    feedback = "/run_policy/_action/feedback"
    try:
        observer = rclpy.create_node("observer", context=contexts[0])
        node = PolicyNode(PolicyNodeConfig(embodiment=str(path), kinematics="joints"),
                          policy_factory=lambda c, e: TowardTarget(e), context=contexts[1])
        assert wait_for(lambda: observer.count_publishers(feedback) == 1, 20.0)
        node.destroy_node()  # the object stays referenced: no garbage collection helps
        assert wait_for(lambda: observer.count_publishers(feedback) == 0, 10.0), \
            "the destroyed node's RunPolicy server is still in the graph"
        observer.destroy_node()
    finally:
        for c in contexts:
            rclpy.try_shutdown(context=c)


@pytest.mark.parametrize("source", ["topic", "sensors"])
def test_process_name_and_remaps_reach_the_inference_thread_inputs(small_embodiment, tmp_path,
                                                                   source):
    """``ros2 launch`` renames the node with a process-wide ``-r __node:=NAME``; the inference
    thread's helper node must not take that name too, and must subscribe where the process's
    remappings send the policy node's inputs."""
    from ate_ros.core.deploy import PolicyNodeConfig
    from ate_ros.nodes.policy_node import PolicyNode

    path = tmp_path / "toy3.yaml"
    small_embodiment.to_yaml(path)
    # Names of this case only: another participant's destroyed nodes can linger in a new
    # observer's graph for a while (stale discovery data), e.g. the other case's.
    name, ns = f"arm_policy_{source}", f"/left_{source}"
    context, observing = rclpy.Context(), rclpy.Context()  # the observer keeps its own name
    rclpy.init(context=context, args=[
        "--ros-args", "-r", f"__node:={name}", "-r", f"__ns:={ns}",
        "-r", "observation:=/remapped/observation", "-r", "joint_states:=/robot/joint_states"])
    rclpy.init(context=observing)
    try:
        observer = rclpy.create_node("observer", context=observing)
        node = PolicyNode(PolicyNodeConfig(embodiment=str(path), kinematics="joints",
                                           observation_source=source),
                          policy_factory=lambda c, e: TowardTarget(e), context=context)
        from rclpy.lifecycle import TransitionCallbackReturn

        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS

        def names():
            return sorted(f"{ns.rstrip('/')}/{n}"
                          for n, ns in observer.get_node_names_and_namespaces())

        assert wait_for(lambda: f"{ns}/_{name}_inputs" in names(), 20.0), names()
        assert names().count(f"{ns}/{name}") == 1, names()
        if source == "topic":
            assert node._obs_sub.topic_name == "/remapped/observation"
        else:
            assert "/robot/joint_states" in node.inputs.topics
            assert f"{ns}/instruction" in node.inputs.topics  # the owner's namespace
        node.destroy_node()
        assert wait_for(lambda: f"{ns}/_{name}_inputs" not in names(), 20.0), names()
        observer.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        rclpy.try_shutdown(context=observing)


def test_sensors_source_feeds_the_model_without_perception_node(graph, camera_embodiment,
                                                                red_centred_frame, tmp_path):
    """observation_source: sensors: camera frames and joint_states go straight to the model
    (cropped and resized, joints by name, the latched instruction); stale frames and foreign
    joint_states are refused and counted; chunks carry the frame's stamp."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from ate_ros.core.deploy import SensorInputsConfig
    from ate_ros.msg import ActionChunk
    from ate_ros.ros import conversions as conv
    from ate_ros.ros.qos import LATCHED_QOS

    make, peer, _ = graph
    emb = camera_embodiment
    emb.to_yaml(tmp_path / "cam2.yaml")
    node = make(embodiment=str(tmp_path / "cam2.yaml"), observation_source="sensors",
                sensors=SensorInputsConfig(max_age=0.5))
    got: list = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    img_pub = peer.create_publisher(conv.Image, "wrist/image_raw", 10)
    js_pub = peer.create_publisher(JointState, "joint_states", 10)
    peer.create_publisher(String, "instruction", LATCHED_QOS).publish(String(data="pick it"))
    node.trigger_configure()
    node.trigger_activate()
    assert node.subscriptions and not any(s.topic_name.endswith("/observation")
                                          for s in node.subscriptions)
    frame = red_centred_frame

    def send(age: float = 0.0, names=("b", "a", "extra")):
        now = peer.get_clock().now().nanoseconds * 1e-9
        stamp = conv.sec_to_time(now - age)
        joints = node.inputs.sync.received["joint_states"] + node.inputs.bad_inputs
        js_pub.publish(JointState(header=conv.Header(stamp=stamp), name=list(names),
                                  position=[0.2, -0.3, 9.0][:len(names)]))
        # The frame forms the observation on arrival: its joint_states must be in first (taken,
        # refused or malformed), or it pairs with older ones.
        wait_for(lambda: node.inputs.sync.received["joint_states"] + node.inputs.bad_inputs
                 > joints, 10.0)
        img_pub.publish(conv.numpy_to_image(frame, stamp, "wrist"))
        return stamp

    assert wait_for(lambda: node.inputs.instruction == "pick it", 10.0)
    assert wait_for(lambda: node.inputs.sync.received["joint_states"] > 0 or send() is None,
                    10.0)
    stamp = send()
    assert wait_for(lambda: any(m.header.stamp == stamp for m in got), 10.0)
    obs = node.policy.last
    assert obs.images["wrist"].shape == (24, 32, 3)
    assert (obs.images["wrist"][..., 0] == 255).all() and (obs.images["wrist"][..., 2] == 0).all()
    np.testing.assert_allclose(obs.qpos[emb.slots], [-0.3, 0.2], atol=1e-6)
    assert obs.instruction == "pick it"
    # A stale frame: refused on arrival, no chunk for it.
    stale = send(age=2.0)
    assert wait_for(lambda: node.inputs.sync.refused.get("stale", 0) > 0, 10.0)
    # joint_states of another robot (no joint 'a'), or with a NaN: malformed, counted.
    send(names=("b", "extra"))
    assert wait_for(lambda: node.inputs.bad_inputs > 0, 10.0)
    js_pub.publish(JointState(header=conv.Header(stamp=send()), name=["a", "b"],
                              position=[float("nan"), 0.0]))
    assert wait_for(lambda: node.inputs.bad_inputs > 1, 10.0)
    assert np.isfinite(node.inputs.sync.get("joint_states")).all()
    # The stale frame was refused on arrival (above); frames are handled in order, so once the
    # later ones are in, a chunk for it would be too.
    assert not any(m.header.stamp == stale for m in got)
    diag = node._diagnose()
    assert diag["sensors_refused_stale"] >= 1 and diag["sensors_malformed_inputs"] >= 1
    from rclpy.parameter import Parameter  # ros2 param set sensors.max_age: applied at once

    assert node.set_parameters([Parameter("sensors.max_age", value=3.0)])[0].successful
    assert node.inputs.sync.max_age == 3.0
    received, refused = node.inputs.sync.received["wrist"], node.inputs.sync.refused["stale"]
    send(age=2.0)  # as old as the refused frame: accepted now (the newer frames stay newest)
    assert wait_for(lambda: node.inputs.sync.received["wrist"] > received, 10.0)
    assert node.inputs.sync.refused["stale"] == refused
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node.inputs is None and not any(
        s.topic_name.endswith("image_raw") for s in node.subscriptions)


def test_chunks_and_stale_observations(graph):
    from ate_ros.msg import ActionChunk, Observation
    from ate_ros.ros import conversions as conv

    make, peer, emb = graph
    node = make(max_obs_age=0.5)
    node.trigger_configure()
    node.trigger_activate()
    # The warm-up's made-up observation does not stay in a stateful policy's history.
    assert (node.policy.calls, node.policy.resets) == (1, 1)
    got = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    pub = peer.create_publisher(Observation, "observation", 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0, 20.0)
    stale = observation(peer, emb, [0.0, 0.1, 0.2], age=3.0)
    pub.publish(stale)
    assert wait_for(lambda: node.refused_stale >= 1, 20.0)
    assert node.chunks == 0  # refused before the model: no chunk for it
    fresh = observation(peer, emb, [0.0, 0.1, 0.2])
    assert wait_for(lambda: (pub.publish(fresh), bool(got))[1], 20.0)
    msg = got[0]
    assert msg.header.stamp == fresh.header.stamp  # stamped with the observation time
    chunk, _ = conv.msg_to_chunk(msg, emb)
    np.testing.assert_allclose(chunk[0], [0.05, 0.15, 0.25], atol=1e-6)
    assert len(chunk) == 8 and np.isnan(msg.ood_score) and msg.inference_latency >= 0
    node.trigger_deactivate()
    # Deactivation published one hold chunk after every chunk (DDS may still carry some of
    # those when the transition returns, so count what the node published).
    assert wait_for(lambda: len(got) == node.chunks + 1, 10.0), (len(got), node.chunks)
    assert "hold" in got[-1].model_id and not any("hold" in m.model_id for m in got[:-1])
    assert not node._inference.running  # then nothing more: no observation is taken


def _active_node_and_client(graph, stream_observations, q):
    """An active ``require_goal`` policy node fed observations at ``q``, the peer's chunk log
    and a connected RunPolicy client."""

    from ate_ros.action import RunPolicy
    from ate_ros.msg import ActionChunk

    make, peer, emb = graph
    node = make(require_goal=True)
    node.trigger_configure()
    node.trigger_activate()
    got = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    stop = stream_observations(q)
    client = action_client_beside(peer, RunPolicy, "run_policy")
    assert client.wait_for_server(timeout_sec=30.0), action_graph_report(client)
    return node, peer, emb, got, stop, client


def test_run_policy_feedback_and_cancel_holds(graph, stream_observations):
    from ate_ros.action import RunPolicy
    from ate_ros.ros import conversions as conv

    q = [0.0, 0.1, 0.2]
    node, peer, emb, got, stop, client = _active_node_and_client(graph, stream_observations, q)
    assert wait_for(lambda: node.gate.paused >= 3, 20.0)
    assert node.chunks == 0  # require_goal: observations arrive, nothing without a goal
    feedback = []
    handle = send_goal(client, feedback, instruction="wave", max_duration=0.0)
    assert wait_for(lambda: len(got) >= 3 and feedback, 20.0)
    assert feedback[-1].chunks >= 1 and np.isnan(feedback[-1].ood_score)
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    result_fut = handle.get_result_async()
    assert wait_for(result_fut.done, 20.0)
    assert result_fut.result().result.outcome == RunPolicy.Result.CANCELED
    chunks, paused = node.chunks, node.gate.paused
    assert wait_for(lambda: node.gate.paused >= paused + 3, 20.0)
    stop.set()
    assert node.chunks == chunks  # observations still arrive: no chunks after the cancel
    hold = [m for m in got if "hold" in m.model_id]
    assert hold, "cancel must publish a stop request"
    # A chunk without points: the executor holds where the robot is (ActionChunk.msg).
    assert len(hold[-1].positions) == 0 and hold[-1].embodiment == emb.name
    assert conv.time_to_sec(hold[-1].header.stamp) > 0
    client.destroy()


@pytest.fixture
def stream_observations(graph):
    """``start(q)``: publish fresh observations at ``q`` from a thread until the returned event
    is set (at the latest when the test ends, before the peer is destroyed)."""
    from ate_ros.msg import Observation

    _, peer, emb = graph
    pub = peer.create_publisher(Observation, "observation", 10)
    running = []

    def start(q, period=0.05) -> threading.Event:
        stop = threading.Event()

        def stream():
            while not stop.is_set():
                pub.publish(observation(peer, emb, q))
                stop.wait(period)

        th = threading.Thread(target=stream, daemon=True)
        th.start()
        running.append((stop, th))
        return stop

    yield start
    for stop, th in running:
        stop.set()
        th.join(timeout=5)


def send_goal(client, feedback: list, **goal):
    from ate_ros.action import RunPolicy

    fut = client.send_goal_async(RunPolicy.Goal(**goal),
                                 feedback_callback=lambda f: feedback.append(f.feedback))
    assert wait_for(fut.done, 20.0)
    handle = fut.result()
    assert handle.accepted
    return handle


def goal_result(handle, timeout=20.0):
    fut = handle.get_result_async()
    assert wait_for(fut.done, timeout), "no RunPolicy result"
    return fut.result()


def test_run_policy_ends_after_its_duration(graph, stream_observations):
    from action_msgs.msg import GoalStatus

    from ate_ros.action import RunPolicy

    node, _, _, got, stop, client = _active_node_and_client(graph, stream_observations,
                                                            [0.0, 0.1, 0.2])
    feedback = []
    t0 = time.monotonic()
    handle = send_goal(client, feedback, instruction="wave", max_duration=1.0)
    res = goal_result(handle)
    elapsed = time.monotonic() - t0
    assert res.status == GoalStatus.STATUS_SUCCEEDED
    assert res.result.outcome == RunPolicy.Result.SUCCEEDED
    assert res.result.reason == "duration reached"
    assert elapsed >= 1.0 and res.result.chunks >= 1 and feedback
    assert feedback[-1].chunks <= res.result.chunks
    assert wait_for(lambda: got and "hold" in got[-1].model_id, 10.0)  # then holds
    chunks, paused = node.chunks, node.gate.paused
    assert wait_for(lambda: node.gate.paused >= paused + 3, 20.0)
    stop.set()
    assert node.chunks == chunks and not node._running  # paused until the next goal
    client.destroy()


def test_lifecycle_services_with_running_goals(graph, stream_observations):
    """Transitions over the lifecycle services (on the node's own executor) while goals run:
    cancel, preemption by a new goal and deactivation each end the goal; nothing leaks."""
    from action_msgs.msg import GoalStatus
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from ate_ros.action import RunPolicy
    from ate_ros.msg import ActionChunk

    make, peer, emb = graph
    node = make(require_goal=True)
    got = []
    peer.create_subscription(ActionChunk, "action_chunk", got.append, 10)
    stop = stream_observations([0.0, 0.1, 0.2])
    lifecycle = peer.create_client(ChangeState, "policy_node/change_state")
    # Discovery, not the node: beside two CPU burners it once took over 20 s (1 run in 10).
    assert lifecycle.wait_for_service(timeout_sec=60.0), sorted(
        n for n, _ in peer.get_service_names_and_types() if n.startswith("/policy_node"))

    def transition(tid: int) -> bool:
        fut = lifecycle.call_async(ChangeState.Request(transition=Transition(id=tid)))
        assert wait_for(fut.done, 20.0), f"transition {tid}: no answer"
        return fut.result().success

    client = action_client_beside(peer, RunPolicy, "run_policy")
    before = None
    for cycle in range(3):
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        if before is None:
            before = entity_counts(node)[:-1]  # a MultiThreadedExecutor adds threads lazily
        assert client.wait_for_server(timeout_sec=30.0), action_graph_report(client)
        feedback = []
        first = send_goal(client, feedback, instruction="wave", max_duration=0.0)
        assert wait_for(lambda fb=feedback: fb and fb[-1].chunks >= 2, 20.0)
        # A second goal preempts the first one.
        feedback2 = []
        second = send_goal(client, feedback2, instruction="wave", max_duration=0.0)
        res = goal_result(first)
        assert res.status == GoalStatus.STATUS_ABORTED
        assert res.result.reason == "preempted by a new goal"
        assert wait_for(lambda fb=feedback2: fb and fb[-1].chunks >= 1, 20.0)
        if cycle == 1:  # cancel: the goal ends canceled, the node holds and stays active
            cancel = second.cancel_goal_async()
            assert wait_for(cancel.done, 20.0)
            res = goal_result(second)
            assert res.status == GoalStatus.STATUS_CANCELED
            assert res.result.outcome == RunPolicy.Result.CANCELED
            assert transition(Transition.TRANSITION_DEACTIVATE)
        else:  # deactivation aborts the running goal
            assert transition(Transition.TRANSITION_DEACTIVATE)
            res = goal_result(second)
            assert res.status == GoalStatus.STATUS_ABORTED
            assert res.result.outcome == RunPolicy.Result.ABORTED
            assert res.result.reason == "deactivated"
        assert wait_for(lambda: "hold" in got[-1].model_id, 10.0)
        assert not node._inference.running, "inputs still taken after deactivation"
        if cycle < 2:
            assert transition(Transition.TRANSITION_CLEANUP)
            assert node.policy is None
            # The server stays (see the module docstring) and rejects goals until activated.
            fut = client.send_goal_async(RunPolicy.Goal(instruction="wave"))
            assert wait_for(fut.done, 20.0) and not fut.result().accepted
    # Still active-able after the cycles, and as many entities/threads as after the first.
    assert transition(Transition.TRANSITION_ACTIVATE)
    assert entity_counts(node)[:-1] == before
    workers = [t for t in threading.enumerate() if t.name == "policy_inference"]
    assert workers == [node._inference.thread]
    assert transition(Transition.TRANSITION_DEACTIVATE)
    assert transition(Transition.TRANSITION_CLEANUP)
    stop.set()
    client.destroy()
