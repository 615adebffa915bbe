"""``ate-ros run``: the ROS 2 graph in one process, for machines without ``ros2 launch``.

    ate-ros run --sim [--policy DIR] [--vae DIR] [--embodiment E] [--task T] [--duration S]

Starts sim_robot_node (with ``--sim``) + perception_node + policy_node + executor_node in one
process on one executor (:func:`ate_ros.ros.spin.graph_executor`: single-threaded),
with the same parameter files the launch files use
(``config/{perception,policy,executor,sim_robot}.yaml``), configures and activates the lifecycle
nodes, and only then starts the simulated episode (the sim node starts paused: a slow model load
never eats the episode); the graph itself is :mod:`ate_ros.nodes.graph`. Runs for
``--duration`` seconds (sim time of the episode with ``--sim``, else wall time; Ctrl-C stops
early), pauses the simulation and prints a summary: chunks, chunk latency p50/p99, model time,
task success of that episode, sim time.

``--lockstep`` (with ``--sim``): sim time advances one control period only after that tick's
observation -> chunk -> executor command went through the graph, and chunks are requested on
the ticks the executor's scheduler asks for them: the graph reproduces the direct evaluation
loop (``ate_ros.core.sim.evaluate.evaluate_policy``) on the same seed. ``--policy expert`` runs
the scripted oracle (:class:`ate_ros.core.sim.experts.ExpertPolicy`) as the policy.
Without ``--sim`` it drives a real robot's ``joint_states``/cameras/controller topics (and
defaults to ``--dry-run``). ``--observation-source sensors`` starts no perception_node: the
policy node subscribes to the cameras and joint_states itself (one DDS hop less per chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ate_ros.commands.arguments import add_dataclass_options
from ate_ros.core.deploy.configs import PolicyNodeConfig, SimRobotConfig
from ate_ros.core.execution.config import CHUNKING_MODES
from ate_ros.nodes.graph import (
    Monitor,
    bring_up,
    build_graph,
    destroy_graph,
    start_simulation,
)


@dataclass(kw_only=True)
class RunOptions:
    """The options of ``ate-ros run`` that are no node parameter (the policy and sim robot
    settings it passes on are ``PolicyNodeConfig``'s and ``SimRobotConfig``'s fields)."""

    sim: bool = field(default=False, metadata={
        "help": "add sim_robot_node: run closed loop on the MuJoCo simulation"})
    duration: float = field(default=10.0, metadata={
        "help": "seconds to run (sim time with --sim)"})
    dry_run: bool | None = field(default=None, metadata={
        "help": "executor sends nothing (default: off with --sim, on without)"})
    config_dir: str = field(default="", metadata={
        "help": "folder with the node YAMLs (default: the package's config/)"})
    until_success: bool = field(default=False, metadata={
        "help": "stop as soon as the simulated task succeeds"})
    lockstep: bool = field(default=False, metadata={
        "help": "--sim: advance sim time one control period only after that tick's observation "
                "-> chunk -> command (reproduces `ate-ros eval`'s loop; runs until the episode "
                "is done or --duration)"})
    start_timeout: float = field(default=60.0, metadata={
        "help": "--sim: wall seconds to wait for the graph before starting anyway"})
    chunking: str | None = field(default=None, metadata={
        "choices": CHUNKING_MODES,
        "help": "when the policy runs and how its chunks join the plan: sets policy_node's "
                "chunking and executor_node's execution.blend (rtc: real-time chunking; sync: "
                "the arm holds while the model runs; default: the config files')"})
    json: str = field(default="", metadata={"help": "also write the summary to this JSON file"})


POLICY_NODE_FIELDS = ("policy", "vae", "device", "observation_source")
SIM_ROBOT_FIELDS = ("embodiment", "task", "seed", "real_time_factor", "controller")
"""The node parameters ``ate-ros run`` sets from its command line (``build_graph``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, RunOptions)
    add_dataclass_options(parser, PolicyNodeConfig, only=POLICY_NODE_FIELDS)
    add_dataclass_options(parser, SimRobotConfig, only=SIM_ROBOT_FIELDS)


def check_run_inputs(args: argparse.Namespace) -> None:
    """The embodiment, and with ``--sim`` the task and the real-time factor, checked before the
    graph is built (ValueError naming the argument)."""
    from ate_ros.core.embodiment import load_embodiment

    if args.embodiment:
        load_embodiment(args.embodiment)
    if args.sim:
        from ate_ros.core.sim.env import check_sim_inputs
        from ate_ros.nodes.sim_robot_node import default_embodiment

        if args.task:
            check_sim_inputs(args.embodiment or default_embodiment(), args.task)
        if not args.real_time_factor > 0:
            raise ValueError(f"--real-time-factor must be > 0, got {args.real_time_factor}")


def run(args: argparse.Namespace) -> int:
    from ate_ros.commands.arguments import error

    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy
    from rclpy.task import Future

    from ate_ros.ros.spin import graph_executor, prefer_short_gil_slices

    prefer_short_gil_slices()

    try:  # before any node: a bad argument is one line, not a node's traceback
        check_run_inputs(args)
    except (ValueError, FileNotFoundError) as exc:  # EmbodimentError, ArmSpecError
        return error("run", exc)
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes: dict[str, Any] = {}
    executor = graph_executor(context)
    stop_spinning = Future()
    spinner = None
    t_wall0 = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        try:
            nodes = build_graph(args, context)
        except (ValueError, FileNotFoundError) as exc:  # a node's settings, a policy folder
            return error("run", exc)
        monitor = Monitor(context)
        for n in [*nodes.values(), monitor.node]:
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin_until_future_complete,
                                   args=(stop_spinning,), daemon=True)
        spinner.start()
        policy = nodes["policy_node"]
        failed = bring_up(nodes)
        if failed:
            print(f"{failed} failed to configure/activate (see log above)")
            return 1
        sim = nodes.get("sim_robot_node")
        if sim is not None and not start_simulation(nodes, args.start_timeout):
            print("warning: graph not ready before --start-timeout: episode started anyway")
        t_run0 = time.monotonic()
        sim_time = None
        try:
            while True:
                elapsed = sim.sim_time if sim else time.monotonic() - t_run0
                if (elapsed >= args.duration - 1e-9 or (args.until_success and monitor.success)
                        or (sim is not None and sim.episode_over.is_set())):
                    break
                time.sleep(0.01)
        except KeyboardInterrupt:
            print("interrupted: stopping")
        if sim is not None:
            sim.pause()  # the episode ends here: sim time and success are this episode's
            sim_time = sim.sim_time
        run_wall = time.monotonic() - t_run0
        policy.trigger_deactivate()
        lat = monitor.latency.summary()
        summary = {
            "embodiment": policy.embodiment.name if policy.embodiment else "",
            "policy": args.policy, "chunks": monitor.chunks,
            "latency_p50_ms": 1e3 * lat["p50"], "latency_p99_ms": 1e3 * lat["p99"],
            "model_time_p50_ms": 1e3 * policy.model_time.percentile(50),
            "stale_observations_refused": policy.refused_stale,
            "ood_score_mean": (sum(monitor.ood) / len(monitor.ood)) if monitor.ood else None,
            "success": bool(sim.success if sim else monitor.success),
            "sim_time_s": sim_time,
            "run_wall_time_s": run_wall,
            "wall_time_s": time.monotonic() - t_wall0,
        }
    finally:
        # Spinning stops first: the executor's shutdown then drains its thread pool (a handler
        # still queued would otherwise fail at exit: "exception was never retrieved").
        stop_spinning.set_result(None)
        if spinner is not None:
            spinner.join(timeout=5.0)
        executor.shutdown()
        destroy_graph(nodes)
        rclpy.try_shutdown(context=context)
    print_summary(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def print_summary(s: dict[str, Any]) -> None:
    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    print("ate-ros run summary")
    for k, v in s.items():
        print(f"  {k:28s} {fmt(v)}")
