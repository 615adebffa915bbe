"""Ctrl-C on each node process of the sim graph: exit code 0, no traceback, no failed publish.

The four nodes run as separate processes, as ``ros2 launch ate_ros sim.launch.py`` starts them
(``python -m ate_ros.nodes.<node>``, sim time, real DDS on this session's ROS_DOMAIN_ID). This
test configures and activates the lifecycle nodes (as the launch files' autostart does), starts
a RunPolicy goal (no end), lets every node publish (the simulation thread, perception's timer,
policy_node's inference thread and goal feedback timer, the executor's control tick, every node's
/diagnostics timer), then sends SIGINT to all of them at once: rclpy's signal handler shuts each
context down while those threads and timers are mid-flight. ~10 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.node_processes import BAD, node_env, reach_state
from support.paths import ROOT
from support.waiting import action_client_beside, wait_for

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.own_process]

EMBODIMENT = "sim_arm7"
SIM_TIME = ["-p", "use_sim_time:=true"]
NODES = {
    "sim_robot_node": ["-p", f"embodiment:={EMBODIMENT}", "-p", "camera_rate_hz:=10.0"],
    "perception_node": ["-p", f"embodiment:={EMBODIMENT}", "-p", "diagnostics_period:=0.2",
                        *SIM_TIME],
    "policy_node": ["-p", f"embodiment:={EMBODIMENT}", "-p", "policy:=wave",
                    "-p", "kinematics:=joints", "-p", "diagnostics_period:=0.2", *SIM_TIME],
    "executor_node": ["-p", f"embodiment:={EMBODIMENT}", "-p", "output:=topic",
                      "-p", "dry_run:=false", "-p", "diagnostics_period:=0.2", *SIM_TIME],
}


def start(name: str, log_dir: Path) -> tuple[subprocess.Popen, Path]:
    log = log_dir / f"{name}.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"ate_ros.nodes.{name}", "--ros-args", *NODES[name]],
            cwd=ROOT, env=node_env(), stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def test_sigint_every_node_exits_cleanly(tmp_path):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import SingleThreadedExecutor
    from trajectory_msgs.msg import JointTrajectory

    from ate_ros.action import RunPolicy
    from ate_ros.msg import ActionChunk, Observation

    procs = {name: start(name, tmp_path) for name in NODES}
    context = rclpy.Context()
    rclpy.init(context=context)
    peer = rclpy.create_node("sigint_probe", context=context)
    counts = {"chunk": 0, "obs": 0, "traj": 0, "feedback": 0}

    def count(key):
        def cb(_msg):
            counts[key] += 1
        return cb

    peer.create_subscription(ActionChunk, "action_chunk", count("chunk"), 10)
    peer.create_subscription(Observation, "observation", count("obs"), 10)
    peer.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", count("traj"),
                             10)
    lifecycle = {n: (peer.create_client(GetState, f"/{n}/get_state"),
                     peer.create_client(ChangeState, f"/{n}/change_state"))
                 for n in ("perception_node", "executor_node", "policy_node")}
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        logs = lambda: "\n".join(f"--- {n} (rc {p.poll()}):\n{log.read_text()}"  # noqa: E731
                                 for n, (p, log) in procs.items())
        for get_state, change_state in lifecycle.values():
            assert change_state.wait_for_service(timeout_sec=60.0), logs()
            assert get_state.wait_for_service(timeout_sec=20.0), logs()
            assert reach_state(get_state, change_state, Transition.TRANSITION_CONFIGURE,
                               State.PRIMARY_STATE_INACTIVE), logs()
            assert reach_state(get_state, change_state, Transition.TRANSITION_ACTIVATE,
                               State.PRIMARY_STATE_ACTIVE), logs()
        # A RunPolicy goal that is still running at Ctrl-C (feedback published per chunk).
        action = action_client_beside(peer, RunPolicy, "run_policy")
        assert action.wait_for_server(timeout_sec=30.0), logs()
        for _ in range(3):  # a lost response: the next goal preempts the first one
            goal = action.send_goal_async(RunPolicy.Goal(instruction="wave", max_duration=0.0),
                                          feedback_callback=count("feedback"))
            if wait_for(goal.done, 10.0):
                break
        assert goal.done() and goal.result().accepted, logs()
        assert wait_for(lambda: min(counts.values()) > 0, 30.0), f"{counts}\n{logs()}"
        seen = dict(counts)  # every node keeps publishing: SIGINT lands mid-flight
        assert wait_for(lambda: all(counts[k] > seen[k] + 2 for k in counts), 30.0), counts
        assert all(p.poll() is None for p, _ in procs.values()), logs()
        for p, _ in procs.values():
            p.send_signal(signal.SIGINT)
        for name, (p, _) in procs.items():
            try:
                p.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                pytest.fail(f"{name} did not exit within 20 s of SIGINT\n{logs()}")
        for name, (p, log) in procs.items():
            text = log.read_text()
            assert p.returncode == 0, f"{name} exited {p.returncode}\n{logs()}"
            bad = [b for b in BAD if b in text.lower()]
            assert not bad, f"{name}: {bad} in its output\n{logs()}"
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        ex.shutdown()
        spinner.join(timeout=5)
        peer.destroy_node()
        rclpy.try_shutdown(context=context)


BUSY_NODE = """
import sys, time
import rclpy.node
from ate_ros.ros.spin import spin_node

class Busy(rclpy.node.Node):
    def __init__(self):
        super().__init__("busy_node")
        self.create_timer(0.02, self.tick)
        self.ticks = 0

    def tick(self):
        # Pure Python for ~all of the main thread's time: a KeyboardInterrupt lands here.
        try:
            end = time.perf_counter() + 0.05
            while time.perf_counter() < end:
                pass
        except KeyboardInterrupt:
            print("INTERRUPTED IN CALLBACK", flush=True)
            raise
        self.ticks += 1
        if self.ticks == 5:
            print("ticking", flush=True)

def before_destroy(node):
    print("stopping", flush=True)
    if sys.argv[1] == "hang":
        time.sleep(60.0)

sys.exit(spin_node(Busy, before_destroy=before_destroy, single_threaded=True))
"""


@pytest.mark.parametrize("shutdown", ["clean", "hang"])
def test_first_sigint_ends_spinning_without_interrupting_a_callback(tmp_path, shutdown):
    """Ctrl-C while a callback runs on the spinning (main) thread: the first SIGINT must not
    raise inside it (or inside rclpy, which then prints a traceback at exit; seen in CI). A
    second SIGINT still ends a shutdown that hangs."""
    log = tmp_path / "busy.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-c", BUSY_NODE, shutdown], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "ticking" in log.read_text(), 60.0), log.read_text()
        proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: "stopping" in log.read_text(), 10.0), log.read_text()
        if shutdown == "hang":
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "INTERRUPTED IN CALLBACK" not in text, text
    if shutdown == "clean":
        assert proc.returncode == 0, text
        assert not [b for b in BAD if b in text.lower()], text
    else:  # the second Ctrl-C interrupts the hung before_destroy
        assert proc.returncode != 0 and "KeyboardInterrupt" in text, text
