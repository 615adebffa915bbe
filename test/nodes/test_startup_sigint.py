"""Ctrl-C at each moment of a node's start-up: exit code 0, no traceback, no ERROR line.

Each node runs as ``ros2 launch`` starts it (``scripts/<node>``, its own namespace so the cases
can run side by side), and this test drives configure and activate over the lifecycle services
as the launch files' autostart does. SIGINT goes out at one moment per case, found from the
node's own output where it has any:

- ``imports``: the import-time line of ``rclpy`` (``PYTHONPROFILEIMPORTTIME``) has come, the
  node module's own has not;
- ``constructor``: rcl's debug line "Initializing node" has come, the executor's first wait set
  (the constructor returned) has not;
- ``configuring``: policy_node with a real (tiny) checkpoint, whose configure imports torch and
  loads it: the first import-time line after the configure request (the "configured" line has
  not come); perception_node and executor_node configure in milliseconds: with the request;
- ``inactive``: configured, not activated; ``activating``: policy_node 50 ms after the
  activate request, into its warm-up inference (no "activated" line yet), the other two with
  the request; ``active``: just after activation;
- sim_robot_node (no lifecycle): ``imports``, ``constructor`` (it loads MuJoCo there) and
  ``running`` (its start-up line has come).

The case table (node, moment, outcome) goes into the reliability record
(``benchmarks/record_reliability.py`` -> docs/reliability.md). ~30 s.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from support.mutations import OutcomeRecord
from support.node_processes import IMPORT_TIME, NodeProcess, bad_lines, reach_state
from support.tiny_policy import save_untrained_policy

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.own_process]

EMBODIMENT = "sim_arm7"
LIFECYCLE_MOMENTS = ("imports", "constructor", "configuring", "inactive", "activating",
                     "active")
SIM_MOMENTS = ("imports", "constructor", "running")
CLEAN = "exit 0, no error line"
ROSOUT_RACE = "Failed to publish log message to rosout"
RACE_OUTCOME = "exit 0, rcl's rosout line for a line logged as SIGINT landed"
"""A line the node logs in the microseconds between the logger's check of the context and rcl
publishing it to /rosout, while rclpy's signal thread shuts the context down, makes rcl print
:data:`ROSOUT_RACE` (ate_ros/ros/node_logger.py). Cases that send SIGINT with a transition
request hit that window now and then; one such line is recorded as its own outcome, anything
more fails."""
RECORD = OutcomeRecord("startup_interrupts")
WAIT_S = 30.0
"""Longest wait for a line or a lifecycle state (a loaded machine, DDS discovery)."""


def node_args(node: str, policy: str) -> list[str]:
    args = ["-p", f"embodiment:={EMBODIMENT}"]
    if node == "policy_node":
        args += ["-p", f"policy:={policy}", "-p", "kinematics:=joints"]
    if node == "executor_node":
        args += ["-p", "output:=topic"]
    if node == "sim_robot_node":
        args += ["-p", "camera_rate_hz:=10.0"]
    return args


@dataclass
class Case:
    node: str
    moment: str
    namespace: str
    lifecycle: tuple | None = None  # (get_state, change_state) clients of the peer
    landed: str = ""  # why the SIGINT missed the moment ("" when it did not)
    problem: str = ""
    outcome: str = ""

    @property
    def name(self) -> str:
        return f"{self.node}/{self.moment}"


def cases() -> list[Case]:
    out = [Case(n, m, f"/sigint_{n}_{m}") for n in ("perception_node", "executor_node",
                                                    "policy_node")
           for m in LIFECYCLE_MOMENTS]
    return out + [Case("sim_robot_node", m, f"/sigint_sim_{m}") for m in SIM_MOMENTS]


def drive(case: Case, proc: NodeProcess) -> str:
    """Bring the node to ``case.moment``, send SIGINT; returns the output up to the SIGINT.

    Raises AssertionError when the moment was not reached (the node is then killed).
    """
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState

    def interrupt() -> str:
        mark = proc.count()
        proc.proc.send_signal(signal.SIGINT)
        return proc.text(mark)

    def transition(tid: int) -> int:
        mark = proc.count()
        case.lifecycle[1].call_async(ChangeState.Request(transition=Transition(id=tid)))
        return mark

    moment = case.moment
    if moment == "imports":
        assert proc.wait_line(r"\|\s+rclpy$", WAIT_S), "rclpy was never imported"
        return interrupt()
    if moment == "constructor":
        assert proc.wait_line(f"Initializing node '{case.node}'", WAIT_S), "no node"
        return interrupt()
    if moment == "running":
        assert proc.wait_line(r"\[INFO\].*sim robot", WAIT_S), "the sim never started"
        return interrupt()
    get_state, change_state = case.lifecycle
    assert change_state.wait_for_service(timeout_sec=WAIT_S), "no change_state service"
    assert get_state.wait_for_service(timeout_sec=WAIT_S), "no get_state service"
    if moment == "configuring":
        mark = transition(Transition.TRANSITION_CONFIGURE)
        if case.node == "policy_node":  # loading: torch's modules import one by one
            assert proc.wait_line(IMPORT_TIME, WAIT_S, after=mark), "configure loaded nothing"
        return interrupt()
    assert reach_state(get_state, change_state, Transition.TRANSITION_CONFIGURE,
                       State.PRIMARY_STATE_INACTIVE, WAIT_S), "never configured"
    if moment == "inactive":
        return interrupt()
    if moment == "activating":
        transition(Transition.TRANSITION_ACTIVATE)
        if case.node == "policy_node":  # into its warm-up inference
            threading.Event().wait(0.05)
        return interrupt()
    assert reach_state(get_state, change_state, Transition.TRANSITION_ACTIVATE,
                       State.PRIMARY_STATE_ACTIVE, WAIT_S), "never activated"
    threading.Event().wait(0.2)
    return interrupt()


LANDED: dict[str, Callable[[Case, str], str]] = {
    # What the output up to the SIGINT must show (or lack) for the moment to be the one named;
    # returns the problem, "" when it landed there.
    "imports": lambda c, before: (
        "" if not any(line.startswith(IMPORT_TIME) and line.endswith(f"ate_ros.nodes.{c.node}")
                      for line in before.splitlines()) else "the node module had imported"),
    "constructor": lambda c, before: (
        "" if "Initializing wait set" not in before else "the node was spinning already"),
    "configuring": lambda c, before: "" if "configured:" not in before else "configure ended",
    "inactive": lambda c, before: (
        "" if ": configured" in before and ": activated" not in before else "not inactive"),
    "activating": lambda c, before: "" if ": activated" not in before else "activate ended",
    "active": lambda c, before: "" if ": activated" in before else "not active",
    "running": lambda c, before: "",
}


def run_case(case: Case, policy: str, tmp_path) -> None:
    extra = ["--log-level", "rcl:=debug"] if case.moment == "constructor" else []
    proc = NodeProcess(case.node, [*node_args(case.node, policy), "-r",
                                   f"__ns:={case.namespace}", *extra],
                       tmp_path / f"{case.node}_{case.moment}.log", import_times=True)
    try:
        before = drive(case, proc)
    except AssertionError as exc:
        proc.kill()
        case.problem = case.outcome = f"moment not reached: {exc}"
        return
    rc = proc.finish(20.0)
    text = proc.text()
    case.landed = LANDED[case.moment](case, before)
    if rc is None:
        case.problem = "still running 20 s after SIGINT"
    elif rc != 0:
        case.problem = f"exit code {rc}"
    elif case.landed:
        case.problem = f"SIGINT missed the moment: {case.landed}"
    bad = bad_lines(text)
    race = [line for line in bad if line.startswith(ROSOUT_RACE)]
    if not case.problem and (len(bad) > len(race) or len(race) > 1):
        case.problem = f"printed {bad[:3]}"
    case.outcome = case.problem or (RACE_OUTCOME if race else CLEAN)


def test_sigint_at_every_moment_of_start_up(tmp_path):
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import SingleThreadedExecutor

    policy = str(save_untrained_policy(tmp_path / "policy"))
    todo = cases()
    context = rclpy.Context()
    rclpy.init(context=context)
    peer = rclpy.create_node("startup_sigint_probe", context=context)
    for case in todo:  # every client before the peer spins
        if case.node != "sim_robot_node":
            base = f"{case.namespace}/{case.node}"
            case.lifecycle = (peer.create_client(GetState, f"{base}/get_state"),
                              peer.create_client(ChangeState, f"{base}/change_state"))
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(peer)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        # Side by side, a few at a time: two cores, and each policy_node imports torch.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda c: run_case(c, policy, tmp_path), todo))
    finally:
        ex.shutdown()
        spinner.join(timeout=5)
        peer.destroy_node()
        rclpy.try_shutdown(context=context)
    for case in todo:
        RECORD.add(case.node, case.moment, case.outcome)
    RECORD.write()
    failed = [f"{c.name}: {c.problem} (log {tmp_path}/{c.node}_{c.moment}.log)"
              for c in todo if c.problem]
    assert not failed, "\n".join(failed)
    assert len(todo) == 3 * len(LIFECYCLE_MOMENTS) + len(SIM_MOMENTS)
