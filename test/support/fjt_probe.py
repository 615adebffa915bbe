"""executor_node with ``output: action`` against a fake FollowJointTrajectory server, over DDS.

Run by ``test/nodes/test_executor_node_fjt.py`` in a subprocess whose PYTHONPATH holds the
test-only control_msgs (``tools/build_test_interfaces.sh``): importing it here cannot switch
``output: auto`` to the action path in the test session. Writes everything it saw as JSON to
``argv[1]``; the test makes the assertions.

The fake controller behaves like ros2_control's joint_trajectory_controller where it matters:
it follows the latest accepted trajectory (its joint_states follow it), a new goal replaces the
active one (the old one ends unsuccessfully), and the robot holds where it is after an abort or
while it has no trajectory. Its mode decides the next goals' fate: ``accept``, ``reject``, or
``abort`` (accepted, then aborted with PATH_TOLERANCE_VIOLATED at once).

``argv[2]`` (``single``, the default, or ``multi``) is how the executor node spins: alone on a
SingleThreadedExecutor as its ``main`` does (the fake controller, whose execute callback blocks,
on a MultiThreadedExecutor of its own), or on the controller's MultiThreadedExecutor as ``ate-ros
run`` spins the graph.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from control_msgs.action import FollowJointTrajectory
from rclpy.action import ActionServer, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/: the support package
from ate_ros.core.embodiment import Embodiment, JointSpec  # noqa: E402
from ate_ros.core.execution import ExecutionConfig, ExecutorNodeConfig  # noqa: E402
from ate_ros.msg import ActionChunk  # noqa: E402
from ate_ros.nodes.executor_node import ExecutorNode  # noqa: E402
from ate_ros.ros.conversions import chunk_to_msg, duration_to_sec, sec_to_time, time_to_sec  # noqa: E402
from ate_ros.ros.qos import COMMAND_QOS  # noqa: E402
from ate_ros.ros.spin import DrainingMultiThreadedExecutor  # noqa: E402
from support.trajectory_math import interp_positions  # noqa: E402
from support.waiting import Spinner, wait_for  # noqa: E402

RATE = 20.0
DT = 1.0 / RATE
CONTROLLER = "ctrl"
WAIT = 30.0  # s: generous, the CPUs may be saturated by other work


def make_embodiment() -> Embodiment:
    # A modest acceleration limit: braking from 0.4 rad/s takes 0.2 s (several control ticks).
    return Embodiment(name="toy3", control_rate_hz=RATE, max_start_deviation=0.5, joints=[
        JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0 + 0.5 * i, max_velocity=1.0,
                  max_acceleration=2.0) for i in range(3)])


class FakeController:
    """A joint_trajectory_controller stand-in serving ``<controller>/follow_joint_trajectory``."""

    def __init__(self, node, emb: Embodiment) -> None:
        self.node, self.emb = node, emb
        self.lock = threading.Lock()
        self.mode = "accept"
        self.publish_states = True
        self.q = np.zeros(emb.dof)
        self.goals: list[dict] = []  # every goal request, in arrival order
        self._by_request: dict[int, dict] = {}
        self._active: dict | None = None  # the goal the robot follows
        self._js = node.create_publisher(JointState, "joint_states", 10)
        cb = ReentrantCallbackGroup()
        self.server = ActionServer(node, FollowJointTrajectory,
                                   f"{CONTROLLER}/follow_joint_trajectory",
                                   execute_callback=self._execute, goal_callback=self._on_goal,
                                   callback_group=cb)
        node.create_timer(0.02, self._step, callback_group=cb)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_goal(self, request) -> GoalResponse:
        traj = request.trajectory
        now = self.now()
        with self.lock:
            rec = {
                "index": len(self.goals), "mode": self.mode, "recv": now,
                "q_recv": self.q.tolist(), "names": list(traj.joint_names),
                "stamp": time_to_sec(traj.header.stamp),
                "times": [duration_to_sec(p.time_from_start) for p in traj.points],
                "positions": [list(p.positions) for p in traj.points],
                "outcome": "rejected" if self.mode == "reject" else "pending",
            }
            self.goals.append(rec)
            self._by_request[id(request)] = rec
        return GoalResponse.REJECT if rec["mode"] == "reject" else GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        result = FollowJointTrajectory.Result()
        with self.lock:
            rec = self._by_request.pop(id(goal_handle.request))
            if rec["mode"] == "abort":
                rec["outcome"] = "aborted"
                self._active = None  # JTC holds position after an abort
                result.error_code = FollowJointTrajectory.Result.PATH_TOLERANCE_VIOLATED
                result.error_string = "fake: path tolerance violated"
                goal_handle.abort()
                return result
            rec["_start_q"] = self.q.copy()
            self._active = rec
        end = rec["stamp"] + (rec["times"][-1] if rec["times"] else 0.0)
        while self.now() < end and rclpy.ok():
            with self.lock:
                superseded = self._active is not rec
            if superseded:  # what the JTC answers when a new goal preempts the active one
                rec["outcome"] = "superseded"
                result.error_code = FollowJointTrajectory.Result.INVALID_GOAL
                result.error_string = "Current goal cancelled due to new incoming action."
                goal_handle.abort()
                return result
            time.sleep(0.01)
        rec["outcome"] = "succeeded"
        result.error_code = FollowJointTrajectory.Result.SUCCESSFUL
        goal_handle.succeed()
        return result

    def _step(self) -> None:
        now = self.now()
        with self.lock:
            rec = self._active
            if rec is not None and rec["times"]:
                t_rel = now - rec["stamp"]
                t0 = rec["recv"] - rec["stamp"]
                ts = np.asarray(rec["times"])
                ps = np.asarray(rec["positions"])
                if t0 < ts[0]:  # from where the robot was when the goal arrived
                    ts = np.concatenate([[t0], ts])
                    ps = np.concatenate([rec["_start_q"][None], ps])
                self.q = interp_positions(ts, ps, t_rel)
            q = self.q.copy()
            publish = self.publish_states
        if publish:
            self._js.publish(JointState(name=self.emb.joint_names, position=q.tolist()))

    def settled(self) -> bool:
        with self.lock:
            rec = self._active
        return rec is None or rec["outcome"] != "pending"


def main(out_path: str, spin: str = "single") -> int:
    rclpy.init()
    emb = make_embodiment()
    cfg = ExecutorNodeConfig(embodiment="toy3", controller=CONTROLLER, output="action",
                             diagnostics_period=0.2,
                             execution=ExecutionConfig(watchdog_timeout=5.0))
    node = ExecutorNode(cfg, embodiment=emb)
    node.trigger_configure()
    node.trigger_activate()
    robot_node = rclpy.create_node("fake_jtc")
    ctrl = FakeController(robot_node, emb)
    chunk_pub = robot_node.create_publisher(ActionChunk, "action_chunk", COMMAND_QOS)
    ex = DrainingMultiThreadedExecutor(num_threads=6)
    node_ex = SingleThreadedExecutor() if spin == "single" else ex
    node_ex.add_node(node)
    ex.add_node(robot_node)
    spinners = [Spinner(e) for e in {ex: None, node_ex: None}]
    report: dict = {"spin": spin, "phases": {}, "errors": [], "emb": {
        "names": emb.joint_names, "lower": emb.lower.tolist(), "upper": emb.upper.tolist(),
        "max_velocity": emb.max_velocity.tolist(), "dt": DT}}

    def counters() -> dict:
        vals = node.diag.values()
        return {k: v for k, v in vals.items()
                if k.startswith(("fjt_", "accepted", "rejected", "trajectories_sent"))}

    def send(offsets: np.ndarray, q=None) -> float:
        """Publish a chunk: robot position + offsets (H, D); returns its observation stamp."""
        with ctrl.lock:
            base = ctrl.q.copy() if q is None else q
        obs = ctrl.now() - 0.02
        chunk_pub.publish(chunk_to_msg(base + offsets, emb, sec_to_time(obs)))
        return obs

    def refused_late() -> int:
        r = node.scheduler.stats.rejected
        return r["stale"] + r["bad_state"]

    def send_for_goal(offsets: np.ndarray, q=None, tries: int = 5) -> float:
        """Send a chunk and wait for the goal it makes. A chunk the executor refused because it
        met it too late (stale, or joint_states older than state_timeout: the loaded VM delays
        callbacks) cannot make one: it is sent again with a fresh stamp. Returns its stamp."""
        for _ in range(tries):
            # Fresh joint_states first: a chunk is refused while they are late.
            wait_for(lambda: node.core.state_fresh(node._now()), WAIT)
            n0, late0 = len(ctrl.goals), refused_late()
            obs = send(offsets, q)
            wait_for(lambda n0=n0, late0=late0: len(ctrl.goals) > n0 or refused_late() > late0,
                     WAIT)
            if len(ctrl.goals) > n0:
                break
        return obs

    def towards_centre(amount: float) -> np.ndarray:
        with ctrl.lock:
            q = ctrl.q.copy()
        centre = (emb.lower + emb.upper) / 2
        return np.where(q > centre, -amount, amount)

    def settle(name: str) -> None:
        ok = wait_for(lambda: ctrl.settled() and not node.scheduler.moving, WAIT)
        time.sleep(0.3)
        if not ok:
            report["errors"].append(f"{name}: did not settle")

    def goals_answered() -> bool:
        """Every goal the controller got is counted by the executor: sent, and (once ended)
        succeeded, preempted or failed."""
        c = node.core.counts
        with ctrl.lock:
            ended = sum(g["outcome"] != "pending" for g in ctrl.goals)
            received = len(ctrl.goals)
        answered = sum(c[f"fjt_goals_{k}"] for k in ("succeeded", "preempted", "rejected",
                                                      "aborted", "canceled"))
        return c["fjt_goals_sent"] == received and answered == ended

    def phase(name: str, start: int, **extra) -> None:
        if not wait_for(goals_answered, WAIT):
            report["errors"].append(f"{name}: goal results not all counted")
        with ctrl.lock:
            end = len(ctrl.goals)
        report["phases"][name] = {"goals": [start, end], "counters": counters(), **extra}

    try:
        if not (wait_for(lambda: node.core.measured is not None, WAIT)
                and wait_for(node._fjt_client.server_is_ready, WAIT)):
            report["errors"].append("no joint_states or FollowJointTrajectory server")
            return 1

        # 1) Nominal chunks, one every 0.15 s: each is 0.5 s long, so every new goal arrives
        #    while the previous one is active (the controller replaces the trajectory).
        n0 = len(ctrl.goals)
        accepted0 = node.scheduler.stats.accepted
        for k in range(6):
            d = np.linspace(0.03, 0.3, 10)[:, None] * np.array([1.0, -1.0, 0.5]) * (-1) ** k
            send(d)
            time.sleep(0.15)
        wait_for(lambda: node.scheduler.stats.accepted >= accepted0 + 6, WAIT)
        wait_for(lambda: len(ctrl.goals) >= n0 + 6, WAIT)
        settle("nominal")
        phase("nominal", n0, chunks_accepted=node.scheduler.stats.accepted - accepted0)

        # 2) A chunk longer than stream_horizon (40 points > 20): the goal must cover all of it.
        n0 = len(ctrl.goals)
        d = np.zeros((40, emb.dof))
        d[:, 0] = np.linspace(0.02, 0.8, 40) * np.sign(towards_centre(1.0)[0])
        with ctrl.lock:
            q = ctrl.q.copy()
        obs = send_for_goal(d, q)
        settle("long")
        phase("long", n0, chunk_end=obs + 40 * DT, target=(q + d[-1]).tolist())

        # 3) + 4) The controller rejects, then aborts (PATH_TOLERANCE_VIOLATED, then holds): the
        #    executor must count it, carry on, and not assume the robot followed (the next goal
        #    starts where the robot is). The next chunk goes out once the failure has reached the
        #    executor: a result the loaded VM delays past it cannot be acted on (seen in CI).
        for failure in ("reject", "abort"):
            n0 = len(ctrl.goals)
            key = "fjt_goals_rejected" if failure == "reject" else "fjt_goals_aborted"
            failed0 = node.core.counts[key]
            ctrl.mode = failure
            send_for_goal(np.linspace(0.1, 1.0, 10)[:, None] * towards_centre(0.48))
            time.sleep(1.5)  # the failed plan would have ended by now

            def failures_heard(key=key, failed0=failed0, n0=n0) -> bool:
                with ctrl.lock:
                    failed = sum(g["outcome"] in ("rejected", "aborted") for g in ctrl.goals[n0:])
                return failed > 0 and node.core.counts[key] - failed0 >= failed

            if not wait_for(failures_heard, WAIT):
                report["errors"].append(f"{failure}: the executor did not hear of every failure")
            ctrl.mode = "accept"
            n1 = len(ctrl.goals)
            send_for_goal(np.linspace(0.01, 0.1, 10)[:, None] * np.ones(emb.dof))
            settle(failure)
            phase(failure, n0, first_after=n1)

        # 5) joint_states stop mid-motion: the executor holds, and must tell the controller at
        #    once (a braking goal), not let it run the rest of the long trajectory.
        n0 = len(ctrl.goals)
        d = np.zeros((40, emb.dof))
        d[:, 1] = np.linspace(0.02, 0.8, 40) * np.sign(towards_centre(1.0)[1])
        send_for_goal(d)
        time.sleep(0.6)
        n1 = len(ctrl.goals)
        ctrl.publish_states = False
        stopped_at = ctrl.now()
        wait_for(lambda: len(ctrl.goals) > n1, WAIT)
        ctrl.publish_states = True
        settle("stale_state")
        phase("stale_state", n0, first_after=n1, stopped_at=stopped_at)

        # 6) Garbage: far outside the limits (clamped), NaN and inf (refused).
        n0 = len(ctrl.goals)
        non_finite0 = node.scheduler.stats.rejected["non_finite"]
        rng = np.random.default_rng(0)
        wild = rng.choice([-1e3, 1e3], size=(10, emb.dof))
        wild[0] = 0.0
        send_for_goal(wild)
        nan = np.full((10, emb.dof), np.nan)
        send(nan)
        inf = np.zeros((10, emb.dof))
        inf[3:, 2] = math.inf
        send(inf)
        wait_for(lambda: node.scheduler.stats.rejected["non_finite"] >= non_finite0 + 2, WAIT)
        settle("wild")
        phase("wild", n0,
              non_finite=node.scheduler.stats.rejected["non_finite"] - non_finite0)
        report["executor_alive"] = all(s.thread.is_alive() for s in spinners) and rclpy.ok()
    except Exception as exc:  # report, the test fails with it
        import traceback

        report["errors"].append(traceback.format_exc())
        print(exc, file=sys.stderr)
    finally:
        with ctrl.lock:
            report["goals"] = [{k: v for k, v in g.items() if not k.startswith("_")}
                               for g in ctrl.goals]
        report["counters"] = counters()
        Path(out_path).write_text(json.dumps(report, indent=1))
        for s in spinners:
            s.close(10.0)  # a spin thread still alive at exit aborts the interpreter (rclpy)
        node.destroy_node()
        robot_node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
