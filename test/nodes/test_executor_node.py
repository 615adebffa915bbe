"""executor_node over real DDS (loopback): smoke tests of what only the node does.

The decisions (holding, braking, goal outcomes, dry run, preemption) are tested on a stepped
clock in test_executor_core.py; here: limits at the controller over real messages, a late tick
on a MultiThreadedExecutor, ExecuteChunk feedback and cancel through the action server (with the
node on a MultiThreadedExecutor shared with the fake robot, as ``ate-ros run`` spins the graph,
and alone on a SingleThreadedExecutor, as its ``main`` does), and a cancel while sim time stands
still (the goal poll runs on the steady clock).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from support.waiting import Spinner, wait_for

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
from ate_ros.core.execution.scheduler import REJECT_BAD_STATE, REJECT_STALE  # noqa: E402
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
        self.stamped = False  # header.stamp = when measured (as joint_state_broadcaster)
        self.frozen = False  # takes the commands but does not move (an e-stop)
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
            if msg.points and not self.frozen:
                self.q = np.array(msg.points[0].positions)

    def _publish_state(self):
        with self.lock:
            q = self.q.copy()
        msg = JointState(name=self.emb.joint_names, position=q.tolist())
        if self.stamped:
            msg.header.stamp = self.node.get_clock().now().to_msg()
        self.js_pub.publish(msg)

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
    from rclpy.lifecycle import TransitionCallbackReturn as R

    assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
    robot_node = rclpy.create_node("fake_robot")
    robot = FakeRobot(robot_node, emb)
    if spin == "single":
        ex, robot_ex = SingleThreadedExecutor(), SingleThreadedExecutor()
    else:
        ex = robot_ex = DrainingMultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    robot_ex.add_node(robot_node)
    spinners = [Spinner(e) for e in {ex: None, robot_ex: None}]
    wait_for(lambda: node.core.measured is not None, 20.0)
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
    later = [(t0, q0, t1, q1) for (t0, q0), (t1, q1) in zip(firsts, firsts[1:])
             if t1 > t0 + 1e-6]
    assert later, "no message started after the one before it"
    for t0, q0, t1, q1 in later:
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
            time.sleep(2.5 * node.core.dt)
        return t

    node._now = preempted_after_reading_the_clock
    start = robot.q.copy()
    ramp = np.linspace(0.0, 0.5, 40)[:, None] * np.array([1.0, 1.0, 1.0])

    def moved() -> bool:
        return calls[0] >= 60 and np.abs(robot.q - start).max() > 0.1

    # The held-up clock reads also delay joint_states: on a loaded machine they can go stale,
    # and the executor then (rightly) drops the plan and holds. The chunk is sent again then.
    for _ in range(10):
        robot.chunk_pub.publish(chunk_to_msg(robot.q + ramp, emb, sec_to_time(robot.now())))
        if wait_for(moved, 3.0):
            break
    assert moved() and node.scheduler.stats.accepted >= 1
    node._now = real_now
    assert node.scheduler.stats.clock_resets == 0


def test_a_robot_that_does_not_move_is_commanded_from_where_it_is(graph, emb):
    """Stamped joint_states of a robot that takes the commands but stays (an e-stop): the
    executor sees it, drops the plan and holds where the robot is, instead of streaming a plan
    the robot never followed (its end 0.6 rad away). The check itself is on a stepped clock in
    test_executor_tracking.py; here: the stamps travel and the node acts on the decision."""
    node, robot = graph
    robot.stamped = robot.frozen = True
    wait_for(lambda: node.core.measured_stamp is not None, 10.0)
    ramp = np.linspace(0.03, 0.6, 20)[:, None] * np.ones(emb.dof)

    def held_at_robot() -> bool:
        with robot.lock:
            last = robot.received[-1] if robot.received else None
        return (node.core.counts["tracking_resets"] >= 1 and last is not None and all(
            np.abs(np.array(p.positions) - robot.q).max() < 1e-6 for p in last.points))

    for _ in range(5):  # resent if refused for late joint_states on a loaded machine
        robot.chunk_pub.publish(chunk_to_msg(robot.q + ramp, emb, sec_to_time(robot.now())))
        if wait_for(held_at_robot, 5.0):
            break
    assert held_at_robot(), (node.core.counts, node.core.last_error)
    assert node.scheduler.stats.accepted >= 1


@pytest.mark.parametrize("graph", [{}, {"spin": "single"}], indirect=True,
                         ids=["multi_threaded", "single_threaded"])
def test_execute_chunk_feedback_and_cancel(graph, emb, action_client):
    node, robot = graph
    client = action_client
    assert client.wait_for_server(timeout_sec=30.0)
    # 1) A short chunk (1 s) succeeds, with feedback.
    q = robot.q.copy()
    chunk = q + np.linspace(0.0, 0.2, 20)[:, None] * np.array([1.0, -1.0, 0.5])
    handle, feedback = _send_until_running(client, lambda: ExecuteChunk.Goal(
        chunk=chunk_to_msg(chunk, emb, sec_to_time(robot.now()))), feedback_count=1)
    res = _result(handle)
    assert res.outcome == ExecuteChunk.Result.SUCCEEDED, res
    # Points already in the past when the goal starts are skipped (a late goal on a loaded
    # machine runs fewer), but a successful goal always reaches the chunk's last point.
    assert res.executed_points >= 1 and res.max_tracking_error < 0.5, res
    assert wait_for(lambda: np.abs(robot.q - chunk[-1]).max() < 1e-3, 10.0), (robot.q, chunk)
    # In order and inside the chunk. Whether the last one (index 19) arrives is up to rclpy: its
    # ActionClient drops feedback that comes after the result (a loaded machine reorders the
    # two); the index of every tick is asserted on a stepped clock (test_executor_core.py).
    idx = [f.index for f in feedback]
    assert idx == sorted(idx) and 0 <= idx[0] and idx[-1] <= 19, idx
    # 2) A long chunk, canceled: outcome CANCELED and the executor holds.
    q = robot.q.copy()
    ramp = np.linspace(0.0, 0.6, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    handle, feedback = _send_until_running(client, lambda: ExecuteChunk.Goal(
        chunk=chunk_to_msg(q + ramp, emb, sec_to_time(robot.now()))), feedback_count=5)
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    res = _result(handle)
    assert res.outcome == ExecuteChunk.Result.CANCELED, res
    assert wait_for(lambda: node.scheduler.holding and not node.scheduler.moving, 10.0)
    held = node.scheduler.last_command
    commands = node.scheduler.stats.commands
    assert wait_for(lambda: node.scheduler.stats.commands >= commands + 5, 10.0)
    np.testing.assert_array_equal(node.scheduler.last_command, held)  # 5 ticks later
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


def _send_until_running(client, make_goal, feedback_count: int, tries: int = 5):
    """Send the goal ``make_goal()`` builds until one runs: ``feedback_count`` feedback messages
    arrived, or it ended otherwise than refused for lateness. Returns its handle and feedback.
    A goal the executor met too late (its stamp, or joint_states, older than the limits: a
    loaded machine delays callbacks) is refused, and sent again with a fresh stamp."""
    for _ in range(tries):
        feedback: list = []
        handle = _send(client, make_goal(), feedback)
        result = handle.get_result_async()
        assert wait_for(lambda fb=feedback, r=result: len(fb) >= feedback_count or r.done(),
                        20.0)
        if len(feedback) >= feedback_count:
            return handle, feedback
        res = result.result().result
        if not (res.outcome == ExecuteChunk.Result.REJECTED
                and res.message.split(":", 1)[0] in (REJECT_STALE, REJECT_BAD_STATE)):
            return handle, feedback
    raise AssertionError(f"{tries} goals in a row were refused as late")


def test_only_this_robots_empty_chunk_is_a_stop_request(emb):
    from ate_ros.ros.conversions import is_stop_request

    assert is_stop_request(chunk_to_msg(np.zeros((0, emb.dof)), emb, sec_to_time(1.0)), emb)
    assert not is_stop_request(ActionChunk(embodiment="other_robot"), emb)
    assert not is_stop_request(chunk_to_msg(np.zeros((2, emb.dof)), emb, sec_to_time(1.0)), emb)


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
                             node.core.measured_at >= t0)[1], 20.0)
    assert client.wait_for_server(timeout_sec=30.0)
    ramp = np.linspace(0.0, 0.6, 80)[:, None] * np.array([1.0, 1.0, 1.0])
    handle = _send(client, ExecuteChunk.Goal(chunk=chunk_to_msg(robot.q + ramp, emb,
                                                                 sec_to_time(t0))))
    assert wait_for(lambda: node.core.goal is not None, 20.0)
    assert math.isfinite(node.scheduler.plan_end)  # planned, not commanded: no tick ran
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 20.0)
    res = _result(handle)
    assert res.outcome == ExecuteChunk.Result.CANCELED and res.executed_points == 0
    assert node.scheduler.plan_end == -math.inf  # the plan is dropped: the next tick holds
