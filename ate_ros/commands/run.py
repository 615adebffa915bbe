"""``ate-ros run``: the ROS 2 graph in one process, for machines without ``ros2 launch``.

    ate-ros run --sim [--policy DIR] [--vae DIR] [--embodiment E] [--task T] [--duration S]

Starts sim_robot_node (with ``--sim``) + perception_node + policy_node + executor_node in one
process on a MultiThreadedExecutor (:class:`ate_ros.ros.spin.DrainingMultiThreadedExecutor`),
with the same parameter files the launch files use
(``config/{perception,policy,executor,sim_robot}.yaml``), configures and activates the lifecycle
nodes (:func:`bring_up`), and only then starts the simulated episode (the sim node starts paused:
a slow model load never eats the episode). Runs for ``--duration`` seconds (sim time of the
episode with ``--sim``, else wall time; Ctrl-C stops early), pauses the simulation and prints a
summary: chunks, chunk latency p50/p99, model time, task success of that episode, sim time.

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
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from ate_ros.core.deploy import OBSERVATION_SOURCES
from ate_ros.core.deploy.configs import chunking_parameters
from ate_ros.core.execution.config import CHUNKING_MODES

NODES = ("sim_robot_node", "perception_node", "policy_node", "executor_node")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sim", action="store_true",
                        help="add sim_robot_node: run closed loop on the MuJoCo simulation")
    parser.add_argument("--policy", default="wave",
                        help="policy checkpoint directory, lerobot:<dir> for a LeRobot "
                             "checkpoint (docs/lerobot.md), or a built-in policy (hold, wave; "
                             "expert: the simulation's scripted oracle, with --sim)")
    parser.add_argument("--vae", default="", help="stage-2 alignment directory (OOD monitor)")
    parser.add_argument("--embodiment", default="",
                        help="embodiment name or YAML ('' = the simulation's adaptation arm)")
    parser.add_argument("--task", default="", help="simulation task ('' = default)")
    parser.add_argument("--seed", type=int, default=0, help="simulation episode seed")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds to run (sim time with --sim)")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="sim seconds per wall second (--sim)")
    parser.add_argument("--device", default="cpu", help="torch device of the policy")
    parser.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=None,
                        help="executor sends nothing (default: off with --sim, on without)")
    parser.add_argument("--controller", default="arm_controller",
                        help="commands go to <controller>/joint_trajectory")
    parser.add_argument("--config-dir", default="",
                        help="folder with the node YAMLs (default: the package's config/)")
    parser.add_argument("--until-success", action="store_true",
                        help="stop as soon as the simulated task succeeds")
    parser.add_argument("--lockstep", action="store_true",
                        help="--sim: advance sim time one control period only after that tick's "
                             "observation -> chunk -> command (reproduces `ate-ros eval`'s loop; "
                             "runs until the episode is done or --duration)")
    parser.add_argument("--start-timeout", type=float, default=60.0,
                        help="--sim: wall seconds to wait for the graph before starting anyway")
    parser.add_argument("--observation-source", choices=OBSERVATION_SOURCES,
                        default=OBSERVATION_SOURCES[0],
                        help="sensors: no perception_node, policy_node subscribes to the cameras "
                             "and joint_states itself (one DDS hop less per chunk)")
    parser.add_argument("--chunking", choices=CHUNKING_MODES, default=None,
                        help="when the policy runs and how its chunks join the plan: sets "
                             "policy_node's chunking and executor_node's execution.blend (rtc: "
                             "real-time chunking; sync: the arm holds while the model runs; "
                             "default: the config files')")
    parser.add_argument("--json", default="", help="also write the summary to this JSON file")


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


def build_graph(args: argparse.Namespace, context: Any) -> dict[str, Any]:
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


def expert_factory(sim: Any):
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
    that tick holds at rest (the executor then sends nothing new).
    """
    sim, ex = nodes.get("sim_robot_node"), nodes.get("executor_node")
    if sim is None or ex is None:
        return

    # The scheduler exists once the executor is configured (before the episode starts).
    def needs_observation(t: float) -> bool:
        with ex._lock:
            return ex.scheduler is not None and ex.scheduler.needs_chunk(t)

    def chunk_handled() -> int:
        sched = ex.scheduler
        return 0 if sched is None else sched.stats.accepted + sched.stats.rejected_total

    def executor_state() -> tuple[int, bool]:
        with ex._lock:
            sched = ex.scheduler
            if sched is None:
                return 0, True
            return sched.stats.commands, sched.holding and not sched.moving

    sim.needs_observation = needs_observation
    sim.chunk_handled = chunk_handled
    sim.executor_state = executor_state


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

    from ate_ros.ros.spin import DrainingMultiThreadedExecutor, prefer_short_gil_slices

    prefer_short_gil_slices()

    try:  # before any node: a bad argument is one line, not a node's traceback
        check_run_inputs(args)
    except (ValueError, FileNotFoundError) as exc:  # EmbodimentError, ArmSpecError
        return error("run", exc)
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes: dict[str, Any] = {}
    executor = DrainingMultiThreadedExecutor(num_threads=4, context=context)
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
        for n in nodes.values():
            if hasattr(n, "stop_inference"):
                n.stop_inference()
            n.destroy_node()
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
