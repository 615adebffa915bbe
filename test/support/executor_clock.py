"""A stepped clock and a perfect robot for :class:`ChunkExecutor` tests (ROS-free).

Time is advanced by the test, tick by tick: ``Clock.step`` runs one control tick, records the
decision and feeds back the robot's joints (the last command, or the latest goal's position).
"""

from __future__ import annotations

import numpy as np

from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.execution import ChunkExecutor, ExecutionConfig, ExecutorNodeConfig, Output
from support.trajectory_math import interp_positions

RATE = 20.0
DT = 1.0 / RATE
T0 = 100.0


def embodiment(amax: float = 10.0) -> Embodiment:
    return Embodiment(name="toy3", control_rate_hz=RATE, max_start_deviation=0.5, joints=[
        JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0 + 0.5 * i, max_velocity=1.0,
                  max_acceleration=amax) for i in range(3)])


def make(goals: bool = False, amax: float = 10.0, **cfg) -> ChunkExecutor:
    cfg.setdefault("execution", ExecutionConfig(watchdog_timeout=5.0))
    ex = ChunkExecutor(embodiment(amax), ExecutorNodeConfig(embodiment="toy3", **cfg),
                       goals=goals)
    ex.observe(T0, np.zeros(3))
    return ex


def ramp(q, total, n, direction=(1.0, -1.0, 0.5)) -> np.ndarray:
    """(n, 3): from q towards q + total * direction."""
    return np.asarray(q) + np.linspace(total / n, total, n)[:, None] * np.asarray(direction)


class Clock:
    """The test's clock and a perfect robot: joint_states are the last command (topic), or
    where the controller's latest goal puts it (FollowJointTrajectory)."""

    def __init__(self, ex: ChunkExecutor) -> None:
        self.ex, self.now, self.tick = ex, T0, 0
        self.goals: list[tuple[int, np.ndarray, np.ndarray]] = []  # (tick, times, positions)
        self.decisions = []

    def step(self, observe: bool = True):
        d = self.ex.step(self.now)
        if d.output is Output.GOAL:
            self.goals.append((self.tick, d.times, d.positions))
            self.ex.goal_sent()
        self.decisions.append(d)
        self.now += DT
        self.tick += 1
        if observe:
            self.ex.observe(self.now, self.robot())
        return d

    def robot(self) -> np.ndarray:
        if self.goals:
            _, t, p = self.goals[-1]
            return interp_positions(np.concatenate([[t[0] - DT], t]),
                                    np.concatenate([p[:1], p]), self.now)
        cmds = [d.command for d in self.decisions if d.command is not None]
        return cmds[-1] if cmds else self.ex.measured

    def run(self, n: int, **kw) -> list:
        return [self.step(**kw) for _ in range(n)]
