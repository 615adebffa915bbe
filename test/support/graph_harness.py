"""The nodes of ``ate-ros run`` in one process, for the graph tests (rclpy, MuJoCo)."""

from __future__ import annotations

import argparse

import rclpy

from support.waiting import Spinner

EMBODIMENT = "sim_arm7"
TASK = "reach"
LOCKSTEP_TIMEOUT = 15.0


def graph_args(**kw):
    base = dict(sim=True, policy="expert", vae="", embodiment=EMBODIMENT, task=TASK, seed=0,
                duration=30.0, real_time_factor=1.0, device="cpu", dry_run=False,
                controller="arm_controller", config_dir="", until_success=False, json="",
                lockstep=True, observation_source="topic")
    base.update(kw)
    return argparse.Namespace(**base)


class Graph:
    """The nodes of ``ate-ros run`` on one context, spun in a thread (closed by ``close``)."""

    def __init__(self, args) -> None:
        from ate_ros.commands.run import Monitor, bring_up, build_graph, start_simulation
        from ate_ros.ros.spin import graph_executor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.ex = graph_executor(self.context)  # as ate-ros run spins it
        self.nodes = build_graph(args, self.context)
        self.monitor = Monitor(self.context)
        for n in [*self.nodes.values(), self.monitor.node]:
            self.ex.add_node(n)
        self.spinner = Spinner(self.ex)
        assert bring_up(self.nodes) == ""
        # A lock-step tick gives up waiting after lockstep_timeout (2 s) of wall time, and
        # this VM stalls that long at times (a fresh-clone run: one timeout in an episode
        # that took 12 s for 22 ticks). The agreement test counts such ticks as failures, so
        # it waits longer.
        from rclpy.parameter import Parameter

        sim = self.nodes["sim_robot_node"]
        assert sim.set_parameters([Parameter("lockstep_timeout", value=LOCKSTEP_TIMEOUT)])[0]\
            .successful
        assert sim.config.lockstep_timeout == LOCKSTEP_TIMEOUT
        assert start_simulation(self.nodes, timeout=20.0)

    @property
    def sim(self):
        return self.nodes["sim_robot_node"]

    def close(self) -> None:
        self.sim.pause()
        self.spinner.close()
        for n in self.nodes.values():
            if hasattr(n, "stop_inference"):
                n.stop_inference()
            n.destroy_node()
        self.monitor.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
