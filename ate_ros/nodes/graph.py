"""The ROS 2 graph in one process: build, wire, bring up and tear down its nodes.

:func:`build_graph` creates sim_robot_node (with ``sim``) + perception_node + policy_node +
executor_node on one context with the parameter files the launch files use
(``config/{perception,policy,executor,sim_robot}.yaml``), overridden by the run's settings;
:func:`bring_up` configures and activates the lifecycle nodes as the launch files' autostart
does; :func:`start_simulation` starts the simulated episode once the graph listens;
:class:`Monitor` listens to the graph's outputs; :func:`destroy_graph` tears it down.
``ate-ros run`` (:mod:`ate_ros.commands.run`) and the graph tests use them.

Settings (``build_graph``'s ``args``: the ``ate-ros run`` options, an ``argparse.Namespace`` or
any object with those attributes): ``sim``, ``policy``, ``vae``, ``embodiment``, ``task``,
``seed``, ``real_time_factor``, ``device``, ``dry_run``, ``controller``, ``config_dir``, and
optionally ``lockstep``, ``observation_source``, ``chunking``.

Lock-step (``lockstep`` with ``sim``): sim time advances one control period only after that
tick's observation -> chunk -> executor command went through the graph, and in one process the
simulation asks the executor when it wants a chunk (:func:`wire_lockstep`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ate_ros.core.deploy.configs import chunking_parameters
from ate_ros.core.deploy.node_configs import NODE_NAMES

__all__ = ["EXPERT_CHUNK", "EXPERT_SEED", "LIFECYCLE_NODES", "NODES", "Monitor", "bring_up",
           "build_graph", "default_config_dir", "destroy_graph", "expert_factory",
           "node_parameters", "start_simulation", "to_overrides", "wire_lockstep"]

NODES = NODE_NAMES


def node_parameters(config_dir: Path, node: str) -> dict[str, Any]:
    """``<node>: ros__parameters:`` of ``config/<node without _node>.yaml``, flattened."""
    import yaml

    path = config_dir / f"{node.removesuffix('_node')}.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    section = (data.get(node) or {}).get("ros__parameters") or {}

    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out

    return flat(section)


def to_overrides(values: dict[str, Any]) -> list:
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in values.items()]


def build_graph(args: Any, context: Any) -> dict[str, Any]:
    """Create the nodes (not spinning yet). Returns name -> node."""
    from ate_ros.core.deploy.policy_factory import saved_policy_settings
    from ate_ros.core.embodiment import load_embodiment
    from ate_ros.nodes.executor_node import ExecutorNode
    from ate_ros.nodes.perception_node import PerceptionNode
    from ate_ros.nodes.policy_node import PolicyNode

    cfg_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    embodiment = args.embodiment
    if not embodiment:
        from ate_ros.nodes.sim_robot_node import default_embodiment

        embodiment = default_embodiment()
    emb = load_embodiment(embodiment)
    emb_spec = str(Path(embodiment).resolve()) if Path(embodiment).suffix in (
        ".yaml", ".yml") else embodiment
    dry_run = (not args.sim) if args.dry_run is None else args.dry_run
    common = {"embodiment": emb_spec, "use_sim_time": bool(args.sim)}
    params = {n: {**node_parameters(cfg_dir, n), **common} for n in NODES}
    source = getattr(args, "observation_source", "topic")
    params["policy_node"].update(policy=args.policy, vae=args.vae, device=args.device,
                                 observation_source=source)
    params["executor_node"].update(dry_run=dry_run, controller=args.controller)
    if getattr(args, "chunking", None):
        for node, values in chunking_parameters(args.chunking).items():
            params[node].update(values)
    # Ours or a LeRobot checkpoint's config.json, read without loading weights.
    saved = saved_policy_settings(args.policy)
    if saved.replan_steps is not None:  # the policy's receding horizon, as ate-ros eval runs it
        params["executor_node"]["execution.replan_steps"] = saved.replan_steps
    # A low-dim policy needs the environment state in the observation bundle too.
    params["perception_node"].update(env_state_dim=saved.env_state_dim)
    lockstep = bool(getattr(args, "lockstep", False)) and args.sim
    # The episode starts once the graph is ready (start_simulation), not while a model loads.
    params["sim_robot_node"].update(task=args.task, seed=args.seed, controller=args.controller,
                                    real_time_factor=args.real_time_factor, start_paused=True,
                                    lockstep=lockstep)
    params["sim_robot_node"].pop("use_sim_time")
    if lockstep:  # one observation per camera stamp, bundled exactly (deterministic)
        params["perception_node"].update(exact_sync=True)
        params["policy_node"]["sensors.exact_sync"] = True
    nodes: dict[str, Any] = {}
    factory = None
    if args.sim:
        from ate_ros.nodes.sim_robot_node import SimRobotNode

        sim = nodes["sim_robot_node"] = SimRobotNode(
            context=context, parameter_overrides=to_overrides(params["sim_robot_node"]))
        if args.policy == "expert":
            factory = expert_factory(sim)
            # A dummy warm-up observation would start the oracle's episode from a fake state.
            params["policy_node"].update(warmup=False)
    elif args.policy == "expert":
        raise SystemExit("--policy expert needs --sim (it reads the simulation's state)")
    if source != "sensors":
        nodes["perception_node"] = PerceptionNode(
            context=context, parameter_overrides=to_overrides(params["perception_node"]))
    nodes["policy_node"] = PolicyNode(
        context=context, policy_factory=factory,
        parameter_overrides=to_overrides(params["policy_node"]))
    nodes["executor_node"] = ExecutorNode(
        embodiment=emb, context=context,
        parameter_overrides=to_overrides(params["executor_node"]))
    if lockstep:
        wire_lockstep(nodes)
    return nodes


EXPERT_CHUNK = 8
EXPERT_SEED = 0


def expert_factory(sim: Any) -> Any:
    """Policy factory for ``--policy expert``: the scripted oracle on the sim node's env.

    Same settings as ``ExpertPolicy(env, chunk_size=EXPERT_CHUNK, seed=EXPERT_SEED)`` in a
    direct ``evaluate_policy`` run, so both loops can be compared episode by episode.
    """
    def make(config, embodiment):
        from ate_ros.core.sim.experts import ExpertPolicy

        return ExpertPolicy(sim.env, chunk_size=EXPERT_CHUNK, seed=EXPERT_SEED)

    return make


def wire_lockstep(nodes: dict[str, Any]) -> None:
    """In one process, let the lock-step sim ask the executor when it wants a chunk.

    The simulation then publishes camera frames (hence an observation, hence a chunk) exactly on
    the ticks where the executor's scheduler runs low (``needs_chunk``), as the direct loop
    does, waits until the executor has taken the chunk before its control tick, and knows when
    that tick holds at rest (the executor then sends nothing new): see
    :class:`ate_ros.core.sim.stepping.InProcessExecutor`.
    """
    sim, ex = nodes.get("sim_robot_node"), nodes.get("executor_node")
    if sim is not None and ex is not None:
        sim.couple_executor(ex)


LIFECYCLE_NODES = ("perception_node", "executor_node", "policy_node")
"""Brought to active in this order: the policy's first chunk finds the executor running."""


def bring_up(nodes: dict[str, Any]) -> str:
    """Configure and activate the graph's lifecycle nodes, as the launch files' autostart does.

    Returns the name of the first node that failed a transition ("" when all are active).
    """
    from rclpy.lifecycle import TransitionCallbackReturn

    for name in LIFECYCLE_NODES:
        node = nodes.get(name)
        if node is None:
            continue
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS or \
                node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            return name
    return ""


def start_simulation(nodes: dict[str, Any], timeout: float = 60.0) -> bool:
    """Start the sim episode once the graph is up: the observation's inputs and the executor
    subscribed (perception_node, or policy_node itself with ``observation_source: sensors``).

    Returns False when the graph did not become ready within ``timeout`` wall seconds (the
    episode starts anyway).
    """
    from ate_ros.core.deploy import JOINT_STATES, OBSERVATION

    sim = nodes.get("sim_robot_node")
    if sim is None:
        return True
    policy = nodes.get("policy_node")
    end = time.monotonic() + timeout
    ready = False
    sensors = policy is not None and policy.inputs is not None
    while time.monotonic() < end:
        subs_js = sim.count_subscribers(JOINT_STATES)
        if sensors:  # the policy reads the cameras itself
            feeds = all(sim.count_subscribers(c.topic) >= 1 for c in policy.embodiment.cameras)
        else:
            feeds = policy is None or policy.count_publishers(OBSERVATION) >= 1
        if subs_js >= 2 and feeds:  # perception (or policy) + executor listen; inputs found
            ready = True
            break
        time.sleep(0.02)
    sim.start_episode()
    return ready


def default_config_dir() -> Path:
    local = Path(__file__).resolve().parents[2] / "config"
    if (local / "policy.yaml").is_file():
        return local
    from ate_ros.core.embodiment import config_dir

    return config_dir()


class Monitor:
    """Listens to the graph's outputs for the summary (chunks, latencies, success)."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from std_msgs.msg import Bool

        from ate_ros.core.deploy import ACTION_CHUNK, TASK_SUCCESS, LatencyStats
        from ate_ros.msg import ActionChunk
        from ate_ros.ros.qos import COMMAND_QOS, LATCHED_QOS

        self.node = rclpy.create_node("ate_run_monitor", context=context)
        self.latency = LatencyStats()
        self.chunks = 0
        self.ood: list[float] = []
        self.success = False
        self.node.create_subscription(ActionChunk, ACTION_CHUNK, self._on_chunk, COMMAND_QOS)
        self.node.create_subscription(Bool, TASK_SUCCESS, self._on_success, LATCHED_QOS)

    def _on_chunk(self, msg) -> None:
        if msg.model_id.startswith("hold"):
            return
        self.chunks += 1
        self.latency.add(msg.inference_latency)
        if math.isfinite(msg.ood_score):
            self.ood.append(msg.ood_score)

    def _on_success(self, msg) -> None:
        self.success = self.success or bool(msg.data)


def destroy_graph(nodes: dict[str, Any]) -> None:
    """Stop the nodes' own threads (inference, simulation) and destroy them."""
    for n in nodes.values():
        if hasattr(n, "stop_inference"):
            n.stop_inference()
        n.destroy_node()
