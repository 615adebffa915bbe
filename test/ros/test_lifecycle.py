"""The lifecycle base the nodes share (:class:`ate_ros.ros.lifecycle.ReleasingLifecycleNode`):
cleanup destroys what configure created; shutdown, from any state, stops the node's own work
first and then destroys the same."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


def _counting_node(context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_msgs.msg import String

    from ate_ros.ros.lifecycle import ReleasingLifecycleNode

    class Talker(ReleasingLifecycleNode):
        """ros2/demos' lifecycle talker, recording its hooks."""

        cleanup_message = "talker cleaned up"

        def __init__(self) -> None:
            super().__init__("talker", context=context)
            self.calls: list[str] = []
            self.pub = None

        def on_configure(self, state):
            self.pub = self.create_lifecycle_publisher(String, "chatter", 10)
            return TransitionCallbackReturn.SUCCESS

        def _halt(self) -> None:
            self.calls.append("halt")

        def _release(self) -> None:
            self.calls.append("release")
            if self.pub is not None:
                self.destroy_lifecycle_publisher(self.pub)
                self.pub = None

    return Talker()


def test_cleanup_releases_and_shutdown_halts_first():
    from rclpy.lifecycle import TransitionCallbackReturn as R

    context = rclpy.Context()
    rclpy.init(context=context)
    node = _counting_node(context)
    try:
        assert node.trigger_configure() == R.SUCCESS
        topics = lambda: [p.topic_name for p in node.publishers]  # noqa: E731
        assert "/chatter" in topics()
        assert node.trigger_cleanup() == R.SUCCESS
        assert node.calls == ["release"] and "/chatter" not in topics()
        assert node.trigger_configure() == R.SUCCESS
        assert node.trigger_activate() == R.SUCCESS
        assert node.trigger_shutdown() == R.SUCCESS  # from active
        assert node.calls == ["release", "halt", "release"] and "/chatter" not in topics()
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_the_base_is_the_lifecycle_nodes_own():
    from ate_ros.nodes.executor_node import ExecutorNode
    from ate_ros.nodes.perception_node import PerceptionNode
    from ate_ros.nodes.policy_node import PolicyNode
    from ate_ros.ros.lifecycle import ReleasingLifecycleNode

    for cls in (ExecutorNode, PerceptionNode, PolicyNode):
        assert issubclass(cls, ReleasingLifecycleNode)
        # Their cleanup and shutdown are the base's: no copy of its body left in a node.
        assert "on_cleanup" not in vars(cls) and "on_shutdown" not in vars(cls)


def test_ctrl_c_during_configure_ends_the_transition_without_an_error_line(capfd):
    """The issue's ``Failed to complete transition 1 ... errorprocessing``: Ctrl-C shuts the
    context down while on_configure loads, and rclpy cannot publish the transition event."""
    from rclpy.lifecycle import TransitionCallbackReturn as R

    from ate_ros.ros.lifecycle import ReleasingLifecycleNode

    context = rclpy.Context()
    rclpy.init(context=context)

    class Loading(ReleasingLifecycleNode):
        def on_configure(self, state):
            self.get_logger().info("loading")
            rclpy.shutdown(context=context)  # what rclpy's SIGINT handler does meanwhile
            self.get_logger().info("configured")
            return R.SUCCESS

        def _release(self) -> None:
            pass

    node = Loading("loading_node", context=context)
    assert node.trigger_configure() != R.SUCCESS  # the transition did not complete
    out = "".join(capfd.readouterr())
    assert "loading" in out, out
    assert "configured" not in out and "Failed" not in out and "rosout" not in out, out
