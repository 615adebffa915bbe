"""The sim node's constructor and clean-up survive each other's failures (#29): a bad task or
embodiment raises its own error, and the clean-up spin_node runs afterwards raises nothing."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")


@pytest.mark.parametrize("field,value", [("task", "no_such_task"),
                                         ("embodiment", "/nonexistent/arm.yaml")])
def test_bad_config_raises_its_own_error_and_cleans_up(field, value):
    from ate_ros.core.sim.env import SimEnv  # noqa: F401  (mujoco present)
    from ate_ros.nodes.sim_robot_node import SimRobotConfig, SimRobotNode

    rclpy.init()
    try:
        with pytest.raises(Exception) as info:
            SimRobotNode(SimRobotConfig(**{field: value}))
        assert not isinstance(info.value, AttributeError), info.value
        # what spin_node's clean-up calls on a half-built node must not raise
        half = SimRobotNode.__new__(SimRobotNode)
        half.stop()
    finally:
        rclpy.shutdown()
