"""sim_robot_node applies its run-time parameters (``ros2 param set``), not only accepts them.

The loops read the node's config at every tick; before this test the node kept the config it
started with, so a set of ``real_time_factor`` or ``lockstep_timeout`` reported success and
changed nothing.
"""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from rclpy.parameter import Parameter  # noqa: E402

from ate_ros.core.deploy import SimRobotConfig  # noqa: E402

pytestmark = [pytest.mark.ros]


def test_run_time_parameters_take_effect():
    from ate_ros.nodes.sim_robot_node import SimRobotNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    sim = SimRobotNode(SimRobotConfig(embodiment="sim_arm5", start_paused=True,
                                      publish_clock=False), context=ctx)
    try:
        new = {"real_time_factor": 3.0, "joint_state_rate_hz": 25.0, "lockstep_timeout": 7.5,
               "max_duration": 4.0}
        results = sim.set_parameters([Parameter(k, value=v) for k, v in new.items()])
        assert all(r.successful for r in results), [r.reason for r in results]
        assert {k: getattr(sim.config, k) for k in new} == new
        # Read-only ones are refused, and the config keeps its value.
        [r] = sim.set_parameters([Parameter("seed", value=5)])
        assert not r.successful and sim.config.seed == 0
    finally:
        sim.destroy_node()
        rclpy.shutdown(context=ctx)
