"""executor_node over real DDS (loopback): limits at the controller, ExecuteChunk, dry_run.

ExecuteChunk runs twice: with the node on a MultiThreadedExecutor shared with the fake robot (as
``ate-ros run`` spins the graph) and alone on a SingleThreadedExecutor (as its ``main`` does).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from trajectory_math import interp_positions
from waiting import Spinner, wait_for

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from ate_ros.action import ExecuteChunk  # noqa: E402
from ate_ros.core.embodiment import Embodiment, JointSpec  # noqa: E402
from ate_ros.core.execution import ExecutionConfig, ExecutorNodeConfig  # noqa: E402
from ate_ros.msg import ActionChunk  # noqa: E402
from ate_ros.nodes.executor_node import ExecutorNode  # noqa: E402
from ate_ros.ros.conversions import (  # noqa: E402
    chunk_to_msg,
    duration_to_sec,
    sec_to_time,
    time_to_sec,
)
from ate_ros.ros.qos import COMMAND_QOS  # noqa: E402
from ate_ros.ros.spin import DrainingMultiThreadedExecutor  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RATE = 20.0


@pytest.fixture(scope="module")
def emb():
    return Embodiment(name="toy3", control_rate_hz=RATE, max_start_deviation=0.5, joints=[
        JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0 + 0.5 * i, max_velocity=1.0,
                  max_acceleration=10.0) for i in range(3)])


class FakeRobot:
    """A perfect robot: publishes joint_states at the last commanded point; records traffic."""

    def __init__(self, node, emb, controller="ctrl"):
        self.node, self.emb = node, emb
        self.q = np.zeros(emb.dof)
        self.lock = threading.Lock()
        self.received: list[JointTrajectory] = []
        self.dry: list[JointTrajectory] = []
        self.diag: list[DiagnosticArray] = []
        self.js_pub = node.create_publisher(JointState, "joint_states", 10)
        self.chunk_pub = node.create_publisher(ActionChunk, "action_chunk", COMMAND_QOS)
        node.create_subscription(JointTrajectory, f"{controller}/joint_trajectory",
                                 self._on_traj, COMMAND_QOS)
        node.create_subscription(JointTrajectory, "executor_node/dry_run_trajectory",
                                 lambda m: self.dry.append(m), COMMAND_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: self.diag.append(m), 10)
        node.create_timer(1.0 / 50, self._publish_state)

    def _on_traj(self, msg):
        with self.lock:
            self.received.append(msg)
            if msg.points:
                self.q = np.array(msg.points[0].positions)

    def _publish_state(self):
        with self.lock:
            q = self.q.copy()
        self.js_pub.publish(JointState(name=self.emb.joint_names, position=q.tolist()))

    def now(self):
        return self.node.get_clock().now().nanoseconds * 1e-9


@pytest.fixture
def graph(emb, request):
    """(executor node, fake robot), spinning in background threads.

    Param (dict, optional): ExecutorNodeConfig fields, plus ``spin``: ``"multi"`` (default; both
    nodes on one MultiThreadedExecutor) or ``"single"`` (the executor node alone on a
    SingleThreadedExecutor, as its ``main`` spins it; the robot on another one), and
    ``node_kwargs`` for the ExecutorNode (``parameter_overrides``).
    """
    params = dict(getattr(request, "param", {}))
    spin = params.pop("spin", "multi")
    node_kwargs = params.pop("node_kwargs", {})
    rclpy.init()
    cfg = ExecutorNodeConfig(embodiment="toy3", controller="ctrl", diagnostics_period=0.2,
                             execution=ExecutionConfig(watchdog_timeout=5.0), **params)
    node = ExecutorNode(cfg, embodiment=emb, **node_kwargs)
    robot_node = rclpy.create_node("fake_robot")
    robot = FakeRobot(robot_node, emb)
    if spin == "single":
        ex, robot_ex = SingleThreadedExecutor(), SingleThreadedExecutor()
    else:
        ex = robot_ex = DrainingMultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    robot_ex.add_node(robot_node)
    spinners = [Spinner(e) for e in {ex: None, robot_ex: None}]
    wait_for(lambda: node._measured is not None, 20.0)
    yield node, robot
    for s in spinners:
        s.close()
    node.destroy_node()
    robot_node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def action_client():
    """An ExecuteChunk client on a node of its own, spinning in a background thread."""
    client_node = rclpy.create_node("exec_client")
    client = ActionClient(client_node, ExecuteChunk, "execute_chunk")
    ex = DrainingMultiThreadedExecutor(num_threads=2)
    ex.add_node(client_node)
    spinner = Spinner(ex)
    yield client
    spinner.close()
    client.destroy()
    client_node.destroy_node()


def _check_limits(emb, trajs):
    vmax_step = emb.max_velocity / RATE
    firsts = []
    for m in trajs:
        assert list(m.joint_names) == emb.joint_names
        qs = np.array([p.positions for p in m.points])
        ts = np.array([duration_to_sec(p.time_from_start) for p in m.points])
        assert np.isfinite(qs).all()
        assert emb.within_limits(qs).all()
        assert (ts > 0).all() and (np.diff(ts) > 0).all()
        assert (np.abs(np.diff(qs, axis=0)) <= vmax_step + 1e-9).all()
        firsts.append((time_to_sec(m.header.stamp) + ts[0], qs[0]))
    # Across messages: the committed points form one velocity-limited sequence.
    for (t0, q0), (t1, q1) in zip(firsts, firsts[1:]):
        if t1 > t0 + 1e-6:
            assert (np.abs(q1 - q0) <= emb.max_velocity * (t1 - t0) + 1e-6).all()


def test_fuzzed_chunks_reach_controller_within_limits(graph, emb):
    node, robot = graph
    rng = np.random.default_rng(0)
    n = 120

    def handled() -> int:
        return node.scheduler.stats.accepted + node.scheduler.stats.rejected_total

    for i in range(n):
        q = robot.q.copy()
        chunk = q + np.cumsum(rng.normal(0, 0.15, (8, 3)), axis=0)
        chunk[0] = q + rng.normal(0, 0.05, 3)
        kind = i % 6
        if kind == 1:
            chunk[3, 1] = np.nan
        elif kind == 2:
            chunk *= 1e6
        msg = chunk_to_msg(chunk, emb, sec_to_time(robot.now() - 0.03))
        if kind == 3:
            msg.joint_names = ["j0", "j1", "elbow"]
        elif kind == 4:  # not a whole number of points
            msg.positions = list(msg.positions)[:-2]
        elif kind == 5:  # columns in another order: mapped by name
            msg.joint_names = ["j2", "j0", "j1"]
            msg.positions = chunk[:, [2, 0, 1]].ravel().tolist()
        robot.chunk_pub.publish(msg)
        # One at a time: the subscription keeps the last 10, and a loaded machine that stalls
        # the executor for a second would otherwise drop some (latest-wins, as on a robot).
        assert wait_for(lambda i=i: handled() >= i + 1, 20.0), f"chunk {i} was never handled"
    time.sleep(0.3)
    stats = node.scheduler.stats
    assert stats.accepted >= n // 6  # the plausible ones (and some others, clamped)
    assert stats.rejected["non_finite"] >= 1 and stats.rejected["shape"] >= n // 3
    with robot.lock:
        trajs = list(robot.received)
    assert len(trajs) > 10
    _check_limits(emb, trajs)
    # /diagnostics carries the counters.
    assert wait_for(lambda: any(kv.key == "clipped_points" for m in robot.diag
                             for s in m.status for kv in s.values), 10.0)


def test_a_late_tick_never_sends_the_scheduler_back_in_time(graph, emb):
    """On the MultiThreadedExecutor a tick that reads the clock and is then held up (a loaded
    machine) must not command after a later tick: the scheduler would take that for the clock
    jumping back and forget the plan (seen in CI as goals that stopped or jumped)."""
    node, robot = graph
    real_now = node._now
    calls = [0]

    def preempted_after_reading_the_clock() -> float:
        t = real_now()
        calls[0] += 1
        if calls[0] % 3 == 0:
            time.sleep(2.5 * node.dt)
        return t

    node._now = preempted_after_reading_the_clock
    start = robot.q.copy()
    ramp = np.linspace(0.0, 0.5, 40)[:, None] * np.array([1.0, 1.0, 1.0])
    robot.chunk_pub.publish(chunk_to_msg(start + ramp, emb, sec_to_time(robot.now())))
    assert wait_for(lambda: node.scheduler.stats.accepted >= 1, 20.0)
    assert wait_for(lambda: calls[0] >= 60 and np.abs(robot.q - start).max() > 0.1, 30.0)
    node._now = real_now
    assert node.scheduler.stats.clock_resets == 0


@pytest.mark.parametrize("graph", [{}, {"spin": "single"}], indirect=True,
                         ids=["multi_threaded", "single_threaded"])
def test_execute_chunk_feedback_and_cancel(graph, emb, action_client):
    node, robot = graph
    client = action_client
    assert client.wait_for_server(timeout_sec=30.0)
    # 1) A short chunk (1 s) succeeds, with feedback.
    feedback = []
    q = robot.q.copy()
    chunk = q + np.linspace(0.0, 0.2, 20)[:, None] * np.array([1.0, -1.0, 0.5])
    goal = ExecuteChunk.Goal(chunk=chunk_to_msg(chunk, emb, sec_to_time(robot.now())))
    fut = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(
        f.feedback))
    assert wait_for(fut.done, 20.0) and fut.result().accepted
    res_fut = fut.result().get_result_async()
    assert wait_for(res_fut.done, 20.0)
    res = res_fut.result().result
    assert res.outcome == ExecuteChunk.Result.SUCCEEDED, res
    # Points already in the past when the goal starts are skipped (a late goal on a loaded
    # machine runs fewer), but a successful goal always reaches the chunk's last point.
    assert res.executed_points >= 1 and res.max_tracking_error < 0.5, res
    assert wait_for(lambda: feedback and feedback[-1].index == 19, 10.0), [
        f.index for f in feedback]
    idx = [f.index for f in feedback]
    assert idx == sorted(idx)
    # 2) A long chunk, canceled: outcome CANCELED and the executor holds.
    q = robot.q.copy()
    chunk = q + np.linspace(0.0, 0.6, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    goal = ExecuteChunk.Goal(chunk=chunk_to_msg(chunk, emb, sec_to_time(robot.now())))
    feedback.clear()
    fut = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(
        f.feedback))
    assert wait_for(fut.done, 20.0) and fut.result().accepted
    assert wait_for(lambda: len(feedback) >= 5, 20.0)
    cancel = fut.result().cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    res_fut = fut.result().get_result_async()
    assert wait_for(res_fut.done, 20.0)
    res = res_fut.result().result
    assert res.outcome == ExecuteChunk.Result.CANCELED, res
    assert wait_for(lambda: node.scheduler.holding and not node.scheduler.moving, 10.0)
    held = node.scheduler.last_command
    time.sleep(0.3)
    np.testing.assert_array_equal(node.scheduler.last_command, held)
    assert held[0] < q[0] + 0.5, (held, q, res)  # stopped well before the chunk's end
    # 3) A chunk for other joints is rejected with a reason.
    bad = chunk_to_msg(np.zeros((3, 3)), emb, sec_to_time(robot.now()))
    bad.joint_names = ["a", "b", "c"]
    fut = client.send_goal_async(ExecuteChunk.Goal(chunk=bad))
    assert wait_for(fut.done, 20.0)
    res_fut = fut.result().get_result_async()
    assert wait_for(res_fut.done, 20.0)
    res = res_fut.result().result
    assert res.outcome == ExecuteChunk.Result.REJECTED and "unknown joints" in res.message



def _send(client, goal, feedback=None):
    """Send an ExecuteChunk goal; its (accepted) goal handle."""
    cb = None if feedback is None else (lambda f: feedback.append(f.feedback))
    fut = client.send_goal_async(goal, feedback_callback=cb)
    assert wait_for(fut.done, 20.0) and fut.result().accepted
    return fut.result()


def _result(handle):
    fut = handle.get_result_async()
    assert wait_for(fut.done, 20.0)
    return fut.result().result


@pytest.mark.parametrize("graph", [{"spin": "single"}], indirect=True, ids=["single_threaded"])
def test_execute_chunk_preempted_by_a_new_goal_and_by_a_topic_chunk(graph, emb, action_client):
    node, robot = graph
    client = action_client
    assert client.wait_for_server(timeout_sec=30.0)
    ramp = np.linspace(0.0, 0.6, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    fb_a, fb_b = [], []
    a = _send(client, ExecuteChunk.Goal(chunk=chunk_to_msg(robot.q + ramp, emb,
                                                            sec_to_time(robot.now()))), fb_a)
    assert wait_for(lambda: len(fb_a) >= 2, 20.0)
    b = _send(client, ExecuteChunk.Goal(chunk=chunk_to_msg(robot.q - ramp, emb,
                                                            sec_to_time(robot.now()))), fb_b)
    res_a = _result(a)
    assert res_a.outcome == ExecuteChunk.Result.PREEMPTED and "new goal" in res_a.message
    assert res_a.executed_points >= 2
    assert wait_for(lambda: len(fb_b) >= 2, 20.0)
    robot.chunk_pub.publish(chunk_to_msg(robot.q + ramp[:10], emb, sec_to_time(robot.now())))
    res_b = _result(b)
    assert res_b.outcome == ExecuteChunk.Result.PREEMPTED and "action_chunk" in res_b.message
    assert node._goal is None and node._goal_timer.is_canceled()


@pytest.mark.parametrize("graph", [{"spin": "single"}], indirect=True, ids=["single_threaded"])
def test_empty_chunk_stops_where_the_robot_is(graph, emb, action_client):
    """A chunk without points (policy_node's stop request) ends the running goal and holds at
    the measured position: the arm brakes and stays, it does not return to an older point."""
    node, robot = graph
    client = action_client
    assert client.wait_for_server(timeout_sec=30.0)
    start = robot.q.copy()
    ramp = np.linspace(0.0, 0.8, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    fb = []
    handle = _send(client, ExecuteChunk.Goal(chunk=chunk_to_msg(start + ramp, emb,
                                                                 sec_to_time(robot.now()))), fb)
    assert wait_for(lambda: np.abs(robot.q - start).max() > 0.15, 20.0)
    robot.chunk_pub.publish(chunk_to_msg(np.zeros((0, emb.dof)), emb, sec_to_time(robot.now()),
                                         model_id="hold (test)"))
    res = _result(handle)
    assert res.outcome == ExecuteChunk.Result.PREEMPTED and "action_chunk" in res.message
    assert wait_for(lambda: node.scheduler.holding and not node.scheduler.moving, 10.0)
    stopped = robot.q.copy()
    time.sleep(0.5)
    np.testing.assert_allclose(robot.q, stopped, atol=1e-9)  # held still
    assert np.abs(stopped - start).min() > 0.15, "it held where it was, not at the start"
    assert node.scheduler.stats.stop_requests == 1
    assert node.scheduler.stats.rejected_total == 0  # a stop request is not a bad chunk
    # Another embodiment's empty chunk is not a stop request for this robot.
    other = ActionChunk(embodiment="other_robot")
    robot.chunk_pub.publish(other)
    time.sleep(0.3)
    assert node.scheduler.stats.stop_requests == 1


@pytest.mark.parametrize(
    "graph", [{"spin": "single",
               "node_kwargs": {"parameter_overrides": [Parameter("use_sim_time", value=True)]}}],
    indirect=True, ids=["single_threaded_sim_time"])
def test_execute_chunk_cancel_while_sim_time_is_paused(graph, emb, action_client):
    """Sim time stands still (no control ticks): a cancel is still answered, and holds."""
    node, robot = graph
    client = action_client
    clock_pub = robot.node.create_publisher(Clock, "/clock", 10)
    t0 = 100.0
    assert wait_for(lambda: (clock_pub.publish(Clock(clock=sec_to_time(t0))),
                             node._measured_at >= t0)[1], 20.0)
    assert client.wait_for_server(timeout_sec=30.0)
    ramp = np.linspace(0.0, 0.6, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    handle = _send(client, ExecuteChunk.Goal(chunk=chunk_to_msg(robot.q + ramp, emb,
                                                                 sec_to_time(t0))))
    assert wait_for(lambda: node._goal is not None, 20.0)
    assert math.isfinite(node.scheduler.plan_end)  # planned, not commanded: no tick ran
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    res = _result(handle)
    assert res.outcome == ExecuteChunk.Result.CANCELED and res.executed_points == 0
    assert node.scheduler.plan_end == -math.inf  # the plan is dropped: the next tick holds

@pytest.mark.parametrize("graph", [{"dry_run": True}], indirect=True)
def test_dry_run_sends_nothing_to_the_controller(graph, emb):
    node, robot = graph
    q = robot.q.copy()
    for _ in range(3):
        chunk = q + np.linspace(0.0, 0.1, 8)[:, None]
        robot.chunk_pub.publish(chunk_to_msg(chunk, emb, sec_to_time(robot.now())))
        time.sleep(0.15)
    assert wait_for(lambda: len(robot.dry) >= 3, 20.0)
    assert node.scheduler.stats.accepted >= 1
    time.sleep(0.2)
    assert robot.received == []
    _check_limits(emb, robot.dry)


class _CapturingFjtClient:
    """Stands in for the FollowJointTrajectory client: records each goal's trajectory."""

    def __init__(self):
        self.trajectories: list[JointTrajectory] = []

    def server_is_ready(self):
        return True

    def send_goal_async(self, goal):
        from rclpy.task import Future

        self.trajectories.append(goal.trajectory)
        return Future()  # the controller never answers: the goal stays the active one

    def destroy(self):
        """A real client leaves the graph here; this one has nothing in it."""


def test_a_chunk_merged_during_a_tick_is_not_in_the_goal_that_tick_sends(emb):
    """The FollowJointTrajectory goal a tick sends is planned under the same lock as its
    command. A chunk merged between the two (another executor thread) went into the goal but
    not into the plan the scheduler records as sent; after a stall it replayed that plan, and
    the next goal started 0.35 rad away from the trajectory the controller was following."""
    import types

    rclpy.init()
    try:
        node = ExecutorNode(ExecutorNodeConfig(embodiment="toy3", controller="ctrl",
                                               execution=ExecutionConfig(watchdog_timeout=5.0)),
                            embodiment=emb)
        client = _CapturingFjtClient()
        node._fjt_client, node._traj_pub = client, None
        node._fjt_type = types.SimpleNamespace(Goal=types.SimpleNamespace)
        clock = [100.0]
        node._now = lambda: clock[0]
        dt = 1.0 / RATE

        def controller_at(t):  # the controller follows the last goal it got
            traj = client.trajectories[-1]
            t0 = time_to_sec(traj.header.stamp)
            times = np.array([t0 + duration_to_sec(p.time_from_start) for p in traj.points])
            pos = np.array([p.positions for p in traj.points])
            return interp_positions(times, pos, t)

        def chunk(direction):  # offsets from the robot's position
            return np.linspace(0.03, 0.3, 10)[:, None] * np.array([1.0, -1.0, 0.5]) * direction

        def advance(seconds):  # the robot is where the controller's trajectory puts it
            clock[0] += seconds
            node._measured, node._measured_at = controller_at(clock[0]), clock[0]

        node._measured, node._measured_at = np.zeros(emb.dof), clock[0]
        node._submit(chunk(+1), clock[0] - 0.02)
        node._tick()
        for _ in range(2):
            advance(dt)
            node._tick()
        # The next tick sends a goal for a new chunk, and one more chunk, the other way,
        # arrives right after its command.
        node._submit(chunk(+1) + node._measured, clock[0] - 0.02)
        real_set, armed = node.diag.set, [True]

        def set_and_merge(key, value):
            if armed[0]:
                armed[0] = False
                node._submit(chunk(-1) + node._measured, clock[0] - 0.02)
            real_set(key, value)

        node.diag.set = set_and_merge
        advance(dt)
        n = len(client.trajectories)
        node._tick()
        assert not armed[0] and len(client.trajectories) == n + 1
        n += 1
        # The tick thread stalls for 6 ticks; the controller runs the last goal meanwhile.
        advance(6 * dt)
        expected = controller_at(clock[0] + dt)
        node._tick()
        assert len(client.trajectories) == n + 1  # the merged chunk's goal
        first = np.array(client.trajectories[-1].points[0].positions)
        assert np.abs(first - expected).max() <= 1.0 * dt + 1e-9
        node.destroy_node()
    finally:
        rclpy.shutdown()
