"""The nodes of ``ate-ros run`` in one process, for the graph tests (rclpy, MuJoCo).

:func:`run_args` are ``ate-ros run``'s settings for a simulated graph; :class:`SpunGraph` builds
the graph (:mod:`ate_ros.nodes.graph`) on a context of its own, spins it in a thread, brings it
up, starts the episode and tears it all down; :class:`Graph` is the lock-step expert graph with a
:class:`~ate_ros.nodes.graph.Monitor`, started at once.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import rclpy

from support.waiting import Spinner

EMBODIMENT = "sim_arm7"
TASK = "reach"
LOCKSTEP_TIMEOUT = 15.0


def run_args(**kw: Any) -> argparse.Namespace:
    """``ate-ros run --sim``'s settings: the wave on sim_arm6 in real time, unless ``kw``."""
    base = dict(sim=True, policy="wave", vae="", embodiment="sim_arm6", task=TASK, seed=0,
                duration=0.0, real_time_factor=1.0, device="cpu", dry_run=False,
                controller="arm_controller", config_dir="", until_success=False, json="",
                lockstep=False, observation_source="topic")
    base.update(kw)
    return argparse.Namespace(**base)


def graph_args(**kw: Any) -> argparse.Namespace:
    """The scripted expert on :data:`EMBODIMENT` in lock-step, unless ``kw``."""
    return run_args(**{"policy": "expert", "embodiment": EMBODIMENT, "duration": 30.0,
                       "lockstep": True, **kw})


def wait_sim(sim: Any, seconds: float, wall_limit: float = 60.0) -> None:
    """Wait until ``seconds`` of sim time have passed (``wall_limit`` wall seconds at most)."""
    t_end = sim.sim_time + seconds
    end = time.monotonic() + wall_limit
    while sim.sim_time < t_end and time.monotonic() < end:
        time.sleep(0.02)
    assert sim.sim_time >= t_end, "simulation did not advance"


class SpunGraph:
    """A context, the executor ``ate-ros run`` spins (``graph_executor``) in a thread, and the
    graph's nodes on them.

    ``build`` creates the nodes (not spinning yet: parameters can still be set), ``bring_up``
    adds them to the executor and activates them, ``start`` starts the episode; ``close``
    (always, e.g. in ``finally``) stops spinning and destroys everything.
    """

    def __init__(self) -> None:
        from ate_ros.ros.spin import graph_executor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.ex = graph_executor(self.context)  # as ate-ros run spins it
        self.nodes: dict[str, Any] = {}
        self.others: list[Any] = []  # peers and monitors, destroyed with the graph
        self.spinner = Spinner(self.ex)

    def peer(self, name: str) -> Any:
        """A plain node beside the graph (subscriptions, clients), spun with it."""
        node = rclpy.create_node(name, context=self.context)
        self.add(node)
        return node

    def add(self, node: Any) -> None:
        self.others.append(node)
        self.ex.add_node(node)

    def build(self, args: argparse.Namespace) -> dict[str, Any]:
        from ate_ros.nodes.graph import build_graph

        self.nodes.update(build_graph(args, self.context))
        return self.nodes

    def bring_up(self) -> None:
        from ate_ros.nodes.graph import bring_up

        for n in self.nodes.values():
            self.ex.add_node(n)
        assert bring_up(self.nodes) == ""

    def start(self, timeout: float = 20.0) -> None:
        from ate_ros.nodes.graph import start_simulation

        assert start_simulation(self.nodes, timeout=timeout)

    @property
    def sim(self) -> Any:
        return self.nodes["sim_robot_node"]

    def close(self) -> None:
        from ate_ros.nodes.graph import destroy_graph

        sim = self.nodes.get("sim_robot_node")
        if sim is not None:
            sim.pause()
        self.spinner.close()
        destroy_graph(self.nodes)
        for n in self.others:
            n.destroy_node()
        rclpy.try_shutdown(context=self.context)


class Graph(SpunGraph):
    """The nodes of ``ate-ros run`` with a Monitor, started at once (closed by ``close``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from rclpy.parameter import Parameter

        from ate_ros.nodes.graph import Monitor

        super().__init__()
        self.build(args)
        self.monitor = Monitor(self.context)
        self.add(self.monitor.node)
        self.bring_up()
        # A lock-step tick gives up waiting after lockstep_timeout (2 s) of wall time, and
        # this VM stalls that long at times (a fresh-clone run: one timeout in an episode
        # that took 12 s for 22 ticks). The agreement test counts such ticks as failures, so
        # it waits longer.
        sim = self.sim
        assert sim.set_parameters([Parameter("lockstep_timeout", value=LOCKSTEP_TIMEOUT)])[0]\
            .successful
        assert sim.config.lockstep_timeout == LOCKSTEP_TIMEOUT
        self.start()
