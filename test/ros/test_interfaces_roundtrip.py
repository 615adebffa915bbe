"""A real ROS 2 round trip over DDS on loopback: ActionChunk on a topic, ExecuteChunk goal with
feedback and cancel, between two rclpy nodes in one process (unique domain id: see conftest)."""

from __future__ import annotations

import math
import time

import pytest
from support.waiting import Spinner, action_client_beside

rclpy = pytest.importorskip("rclpy")

from rclpy.action import ActionServer, CancelResponse, GoalResponse  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402

from ate_ros.action import ExecuteChunk  # noqa: E402
from ate_ros.core.chunk_layout import read_action_chunk  # noqa: E402
from ate_ros.msg import ActionChunk  # noqa: E402
from ate_ros.ros.spin import DrainingMultiThreadedExecutor  # noqa: E402


def _chunk(n_points: int = 5) -> ActionChunk:
    msg = ActionChunk()
    msg.embodiment = "toy3"
    msg.model_id = "roundtrip"
    msg.ood_score = math.nan
    msg.joint_names = ["j0", "j1", "j2"]
    msg.dt = 0.1
    msg.positions = [v for i in range(n_points) for v in (0.1 * i, -0.1 * i, 0.0)]
    return msg


class _Server(Node):
    """Executes a chunk point by point (one per 50 ms), publishing feedback, honouring cancel."""

    def __init__(self) -> None:
        super().__init__("roundtrip_server")
        self.received: list[ActionChunk] = []
        self.create_subscription(ActionChunk, "action_chunk", self.received.append, 10)
        group = ReentrantCallbackGroup()
        self._server = ActionServer(
            self, ExecuteChunk, "execute_chunk", execute_callback=self._execute,
            goal_callback=lambda _g: GoalResponse.ACCEPT,
            cancel_callback=lambda _g: CancelResponse.ACCEPT, callback_group=group)

    def _execute(self, handle):
        points = read_action_chunk(handle.request.chunk).positions
        result = ExecuteChunk.Result()
        for i, _ in enumerate(points):
            if handle.is_cancel_requested:
                handle.canceled()
                result.outcome = ExecuteChunk.Result.CANCELED
                result.executed_points = i
                return result
            fb = ExecuteChunk.Feedback()
            fb.index = i
            fb.tracking_error = 0.01 * i
            handle.publish_feedback(fb)
            # Executor threads may block; this stands in for waiting on the robot.
            time.sleep(0.05)
        handle.succeed()
        result.outcome = ExecuteChunk.Result.SUCCEEDED
        result.executed_points = len(points)
        return result


@pytest.fixture
def graph():
    rclpy.init()
    server, client_node = _Server(), Node("roundtrip_client")
    executor = DrainingMultiThreadedExecutor(num_threads=4)
    executor.add_node(server)
    executor.add_node(client_node)
    spinner = Spinner(executor)
    yield server, client_node
    spinner.close()
    server.destroy_node()
    client_node.destroy_node()
    rclpy.shutdown()


def _wait(future, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, "timed out waiting for a ROS future"
        time.sleep(0.01)
    return future.result()


def test_action_chunk_topic(graph) -> None:
    server, client_node = graph
    pub = client_node.create_publisher(ActionChunk, "action_chunk", 10)
    deadline = time.monotonic() + 30
    while not server.received and time.monotonic() < deadline:
        pub.publish(_chunk())
        time.sleep(0.05)
    assert server.received, "no ActionChunk arrived over DDS"
    got = server.received[0]
    assert got.embodiment == "toy3" and math.isnan(got.ood_score)
    fields = read_action_chunk(got)
    assert fields.positions[2].tolist() == pytest.approx([0.2, -0.2, 0])
    assert fields.times[4] == pytest.approx(0.5)


def test_execute_chunk_feedback_and_result(graph) -> None:
    _, client_node = graph
    client = action_client_beside(client_node, ExecuteChunk, "execute_chunk")
    assert client.wait_for_server(timeout_sec=30)
    feedback: list[int] = []
    goal = ExecuteChunk.Goal(chunk=_chunk(4))
    handle = _wait(client.send_goal_async(goal, feedback_callback=lambda f:
                                          feedback.append(f.feedback.index)))
    assert handle.accepted
    result = _wait(handle.get_result_async()).result
    assert result.outcome == ExecuteChunk.Result.SUCCEEDED
    assert result.executed_points == 4
    assert feedback == [0, 1, 2, 3]


def test_execute_chunk_cancel(graph) -> None:
    _, client_node = graph
    client = action_client_beside(client_node, ExecuteChunk, "execute_chunk")
    assert client.wait_for_server(timeout_sec=30)
    feedback: list[int] = []
    handle = _wait(client.send_goal_async(ExecuteChunk.Goal(chunk=_chunk(40)),
                                          feedback_callback=lambda f:
                                          feedback.append(f.feedback.index)))
    deadline = time.monotonic() + 30
    while len(feedback) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    _wait(handle.cancel_goal_async())
    result = _wait(handle.get_result_async()).result
    assert result.outcome == ExecuteChunk.Result.CANCELED
    assert 2 <= result.executed_points < 40
