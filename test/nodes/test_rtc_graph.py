"""Real-time chunking through the ROS graph (real DDS, sim time): ``ate-ros run --chunking rtc``
with a deliberately slow policy keeps the arm moving (no pause between chunks) within its
limits, policy_node hands the policy the committed prefix, and the parameters read back from the
running nodes are the ones ``--chunking`` set. The launch files' ``chunking:=`` argument sets the
same two parameters (checked on their source: launch_ros is not installed everywhere)."""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np
import pytest
from support.paths import ROOT  # noqa: E402


def _launch_params(path: Path, executable: str) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        exe = next((k.value for k in call.keywords if k.arg == "executable"), None)
        if isinstance(exe, ast.Constant) and exe.value == executable:
            params = next(k.value for k in call.keywords if k.arg == "parameters")
            out = {}
            for el in params.elts:
                if isinstance(el, ast.Dict):
                    out.update({k.value: v for k, v in zip(el.keys, el.values)
                                if isinstance(k, ast.Constant)})
            return out
    raise AssertionError(f"{executable} not in {path.name}")


def test_launch_chunking_argument_sets_both_nodes_in_both_files():
    from ate_ros.core.deploy.configs import chunking_parameters
    from ate_ros.core.execution.config import CHUNKING_MODES

    robot = ROOT / "launch" / "ate.launch.py"
    policy = _launch_params(robot, "policy_node")
    executor = _launch_params(robot, "executor_node")
    assert ast.unparse(policy["chunking"]) == "chunking"  # LaunchConfiguration("chunking")
    blend = ast.unparse(executor["execution.blend"])
    assert "PythonExpression" in blend and "chunking" in blend
    # The expression's mapping is chunking_parameters' (sync -> replace, the rest as named).
    for mode in CHUNKING_MODES:
        value = eval(f"'replace' if '{mode}' == 'sync' else '{mode}'")  # noqa: S307
        assert value == chunking_parameters(mode)["executor_node"]["execution.blend"]
    sim = (ROOT / "launch" / "sim.launch.py").read_text()
    tree = ast.parse(sim)
    forwarded = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and any(
        getattr(t, "id", "") == "ROBOT_ARGUMENTS" for t in n.targets))
    assert "chunking" in {e.value for e in forwarded.value.elts}
    # sim.launch.py includes the ate.launch.py beside it (the source tree's when run by path).
    assert "os.path.dirname(os.path.abspath(__file__))" in sim


def test_run_chunking_option_sets_both_nodes():
    from ate_ros.commands.run import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["--chunking", "rtc"]).chunking == "rtc"
    assert p.parse_args([]).chunking is None
    with pytest.raises(SystemExit):
        p.parse_args(["--chunking", "async"])


# ----- the graph --------------------------------------------------------------------------------
rclpy = pytest.importorskip("rclpy")
SLOW_S = 0.4  # wall seconds per chunk: 2 control periods of sim_arm6 at half real time



def _get_parameter(peer, node: str, name: str, timeout: float = 20.0):
    from rcl_interfaces.srv import GetParameters

    client = peer.create_client(GetParameters, f"/{node}/get_parameters")
    assert client.wait_for_service(timeout_sec=timeout), f"{node} has no parameter service"
    future = client.call_async(GetParameters.Request(names=[name]))
    end = time.monotonic() + timeout
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    assert future.done(), f"no answer from {node}"
    value = future.result().values[0]
    peer.destroy_client(client)
    return value.string_value


def test_takeover_index_in_the_chunk_message():
    """chunk_to_msg stamps it where the generated interface has the field (built from
    msg/ActionChunk.msg after this change); a message without it reads as 0."""
    from types import SimpleNamespace

    from ate_ros.core.embodiment import Embodiment, JointSpec
    from ate_ros.msg import ActionChunk
    from ate_ros.ros import conversions as conv

    emb = Embodiment(name="toy2", joints=[JointSpec(name=f"j{i}", slot=i, lower=-2, upper=2)
                                          for i in range(2)])
    msg = conv.chunk_to_msg(np.zeros((4, 2)), emb, conv.sec_to_time(1.0), takeover_index=3)
    if hasattr(ActionChunk(), "takeover_index"):
        assert conv.chunk_takeover(msg) == 3
        assert conv.chunk_takeover(conv.chunk_to_msg(np.zeros((4, 2)), emb,
                                                     conv.sec_to_time(1.0))) == 0
    else:  # interfaces generated before the field: the chunk takes over from its start
        assert conv.chunk_takeover(msg) == 0
    assert conv.chunk_takeover(SimpleNamespace()) == 0
    assert "uint32 takeover_index" in (ROOT / "msg" / "ActionChunk.msg").read_text()


@pytest.mark.ros
@pytest.mark.slow
def test_slow_policy_with_rtc_never_pauses_and_stays_in_limits(monkeypatch):
    pytest.importorskip("mujoco")
    from support.graph_harness import SpunGraph, run_args, wait_sim

    import ate_ros.nodes.policy_node as policy_node
    from ate_ros.core.deploy import WavePolicy

    calls: list[tuple[float, np.ndarray | None, int]] = []

    class SlowWave(WavePolicy):
        """The wave, SLOW_S wall seconds per chunk; takes the committed prefix."""

        def predict_chunk(self, obs, num_steps=None, seed=None, prefix=None,
                          inference_delay=0):
            time.sleep(SLOW_S)
            calls.append((obs.stamp, None if prefix is None else np.array(prefix),
                          inference_delay))
            return super().predict_chunk(obs, num_steps, seed)

    monkeypatch.setattr(policy_node, "load_chunk_policy", lambda cfg, emb: SlowWave(emb))
    g = SpunGraph()
    try:
        peer = g.peer("rtc_peer")
        nodes = g.build(run_args(real_time_factor=0.5, chunking="rtc"))
        from rclpy.parameter import Parameter

        # Observations come at perception's 5 Hz (two control periods apart), and this machine
        # is shared (latency spikes of 0.5 s seen at real time): the largest recent latency
        # plus 4 points, and the simulation at half real time.
        nodes["policy_node"].set_parameters([Parameter("rtc_margin", value=4),
                                             Parameter("latency_quantile", value=1.0)])
        # The wave starts away from the arm's initial pose, and while the arm converges at its
        # velocity limit the plan's first point can be further than max_start_deviation
        # (0.5) from it: a refused chunk, whichever the chunking, leaves a gap in the plan.
        nodes["executor_node"].set_parameters([Parameter("execution.max_start_deviation",
                                                         value=3.0)])
        g.bring_up()
        assert _get_parameter(peer, "policy_node", "chunking") == "rtc"
        assert _get_parameter(peer, "executor_node", "execution.blend") == "rtc"
        executor = nodes["executor_node"]
        sched = executor.core.scheduler
        ticks: list[tuple[float, np.ndarray, bool]] = []
        command = sched.command

        def recording(now, q):
            out = command(now, q)
            ticks.append((float(now), out.copy(), sched.holding))
            return out

        sched.command = recording
        g.start()
        wait_sim(g.sim, 8.0, wall_limit=120.0)
        pol = nodes["policy_node"]
        n_chunks = pol.chunks
    finally:
        g.close()

    assert n_chunks >= 6, f"only {n_chunks} chunks in 8 s"
    guided = [(p, d) for _, p, d in calls[1:] if p is not None]
    assert len(guided) >= n_chunks - 3, (len(guided), n_chunks)
    assert all(d >= 2 for _, d in guided[2:]), [d for _, d in guided]  # 0.2 s sim + the graph
    # No pause: from the first chunk on (the latency estimate has a sample), every tick
    # followed a plan.
    first = next(i for i, (_, _, holding) in enumerate(ticks) if not holding)
    held = [t for t, _, holding in ticks[first:] if holding]
    if held:
        print("ticks", [(round(t, 2), h) for t, _, h in ticks[first:first + 40]])
        print("calls", [(round(st, 2), None if p is None else len(p), d) for st, p, d in calls])
    assert not held, f"the executor held at {held[:5]} (of {len(ticks) - first} ticks)"
    # Limits: positions and velocity between consecutive commands.
    emb = executor.core.embodiment
    times = np.array([t for t, _, _ in ticks[first:]])
    q = np.array([c for _, c, _ in ticks[first:]])
    assert (q >= emb.lower - 1e-9).all() and (q <= emb.upper + 1e-9).all()
    dt = np.maximum(np.diff(times), emb.control_period)[:, None]
    assert (np.abs(np.diff(q, axis=0)) <= emb.max_velocity * dt * (1 + 1e-6) + 1e-9).all()
    assert np.ptp(q, axis=0).max() > 0.2  # it did move (the wave)
    stats = executor.core.stats
    assert stats.accepted >= n_chunks - 2 and stats.watchdog_holds == 0
    print(f"rtc graph: {n_chunks} chunks, delays {[d for _, d in guided]}, "
          f"{len(ticks) - first} ticks without a hold")


@pytest.mark.ros
@pytest.mark.parametrize("mode", ["sync", "replace", "crossfade", "ensemble", "rtc"])
def test_every_chunking_mode_is_read_back_from_the_running_nodes(mode):
    """``ate-ros run --chunking MODE`` (graph without the simulation, nodes spinning): the
    parameter services of policy_node and executor_node answer what chunking_parameters sets."""
    from support.graph_harness import run_args
    from support.waiting import Spinner

    from ate_ros.core.deploy.configs import chunking_parameters
    from ate_ros.core.execution.config import CHUNKING_MODES
    from ate_ros.nodes.graph import build_graph
    from ate_ros.ros.spin import DrainingMultiThreadedExecutor

    assert mode in CHUNKING_MODES
    context = rclpy.Context()
    rclpy.init(context=context)
    ex = DrainingMultiThreadedExecutor(num_threads=2, context=context)
    peer = rclpy.create_node("chunking_peer", context=context)
    ex.add_node(peer)
    nodes = build_graph(run_args(sim=False, chunking=mode), context)
    for n in nodes.values():
        ex.add_node(n)
    spinner = Spinner(ex)
    try:
        want = chunking_parameters(mode)
        assert _get_parameter(peer, "policy_node", "chunking") == mode
        assert (_get_parameter(peer, "executor_node", "execution.blend")
                == want["executor_node"]["execution.blend"])
    finally:
        spinner.close()
        for n in nodes.values():
            n.destroy_node()
        peer.destroy_node()
        rclpy.shutdown(context=context)
