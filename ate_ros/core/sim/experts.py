"""Scripted experts: task logic in Cartesian space, damped-least-squares IK to joint targets.

Every control tick the expert picks where the fingertip should be next (a speed-limited step
toward the task's current waypoint), solves IK from its previous command with the tool pointing
down, limits the joint step to the embodiment's velocity limits, and adds a little noise. Per
episode it also draws its speed, hover height and via points, so demonstrations differ from one
another the way human teleoperation would.

The experts read privileged object state (:meth:`SimEnv.task_state`); they generate data and
serve as an oracle :class:`ExpertPolicy` to test evaluation, never as a learned policy.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np

from ate_ros.core.config_fields import validate_fields
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.sim.arms import BLOCK_HALF, TIP_RADIUS

logger = logging.getLogger(__name__)


@dataclass
class ExpertConfig:
    """Expert behaviour and its randomisation.

    Attributes:
        speed: (min, max) fingertip speed (m/s) for free motion, drawn per episode.
        push_speed: (min, max) fingertip speed (m/s) while pushing.
        accel: Fingertip acceleration (m/s^2); ramps speed so commands stay smooth.
        hover: (min, max) height (m) of the fingertip above the table when approaching.
        via_noise: Half-width (m) of the random offset of the free-motion via point.
        goal_noise: Half-width (m) of the random offset of the final fingertip goal.
        action_noise: Standard deviation (rad) of Gaussian noise added to each joint target.
        velocity_fraction: Fraction of each joint's max velocity the expert may command.
    """

    speed: tuple[float, float] = (0.12, 0.2)
    push_speed: tuple[float, float] = (0.06, 0.1)
    accel: float = field(default=1.5, metadata={"min": 0.0, "min_exclusive": True})
    hover: tuple[float, float] = (0.09, 0.13)
    via_noise: float = field(default=0.04, metadata={"min": 0.0})
    goal_noise: float = field(default=0.006, metadata={"min": 0.0})
    action_noise: float = field(default=0.003, metadata={"min": 0.0})
    velocity_fraction: float = field(default=0.8, metadata={
        "min": 0.0, "min_exclusive": True, "max": 1.0})

    def __post_init__(self) -> None:
        validate_fields(self)
        for name in ("speed", "push_speed", "hover"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"ExpertConfig.{name} must be (min, max) with 0 < min <= max, "
                                 f"got {(lo, hi)}")


PUSH_HEIGHT = BLOCK_HALF
"""Fingertip centre height (m) while pushing: the block's mid-height."""
CONTACT = BLOCK_HALF + TIP_RADIUS
"""Distance (m) between block centre and fingertip centre when they touch face-on."""


class ScriptedExpert:
    """Task expert for one :class:`~ate_ros.core.sim.env.SimEnv` (any arm, any task).

    Args:
        env: The environment (its kinematics, embodiment and task name are used).
        seed: Seed for the expert's own randomness (per-episode parameters and noise).
        config: Behaviour and noise settings.
    """

    def __init__(self, env, seed: int | None = None, config: ExpertConfig | None = None
                 ) -> None:
        self.kin = env.kinematics
        self.emb = env.embodiment
        self.task = env.task.name
        self.dt = env.control_period
        self.config = config or ExpertConfig()
        self.rng = np.random.default_rng(seed)
        self.q_cmd: np.ndarray | None = None

    def reset(self, q: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Start an episode from measured joints ``q``; draws this episode's parameters."""
        c, rng = self.config, self.rng
        self.q_cmd = np.asarray(q, dtype=np.float64).copy()
        self.speed = rng.uniform(*c.speed)
        self.push_speed = rng.uniform(*c.push_speed)
        self.hover = rng.uniform(*c.hover)
        self.vel = 0.0
        self.phase = 0
        self.goal_offset = rng.uniform(-c.goal_noise, c.goal_noise, 3)
        start, _ = self.kin.fk(self.q_cmd)
        if self.task == "reach":
            target = state["target"] + self.goal_offset
            via = 0.5 * (start + target) + rng.uniform(-c.via_noise, c.via_noise, 3)
            via[2] = max(via[2], target[2]) + rng.uniform(0.0, 0.04)
            self.waypoints = [via, target]
        elif self.task == "pick_color":
            top = state["target"] + [0.0, 0.0, CONTACT - 0.004]
            top[:2] += self.goal_offset[:2]
            above = top.copy()
            above[2] = BLOCK_HALF * 2 + self.hover
            via = 0.5 * (start + above) + rng.uniform(-c.via_noise, c.via_noise, 3)
            via[2] = max(via[2], above[2])
            self.waypoints = [via, above, top]
        elif self.task == "push":
            self.waypoints = []
        else:
            raise ValueError(f"no scripted expert for task {self.task!r}")

    # ----- task logic: where should the fingertip go now? ------------------------------------
    def _waypoint_goal(self, tip: np.ndarray) -> np.ndarray:
        while len(self.waypoints) > 1 and np.linalg.norm(self.waypoints[0] - tip) < 0.025:
            self.waypoints.pop(0)
        return self.waypoints[0]

    def _push_goal(self, tip: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray,
                                                                                  float]:
        """Phases: 0 hover behind the block, 1 descend, 2 push, 3 done (hold)."""
        block, goal = state["block"][:2], state["goal"]
        to_goal = goal - block
        dist = np.linalg.norm(to_goal)
        d = to_goal / max(dist, 1e-6)
        behind = block - d * (CONTACT + 0.025)
        if self.phase == 2:
            rel = tip[:2] - block
            along = rel @ d
            lateral = np.linalg.norm(rel - along * d)
            # The block slid or turned away from the fingertip: back off and approach again.
            if lateral > 0.02 or along > -CONTACT + 0.01:
                self.phase = 0
        if self.phase in (0, 1) and dist < 0.012:
            self.phase = 3
        if self.phase == 2 and dist < 0.01:
            self.phase = 3
        if self.phase == 0:
            above = np.append(behind, PUSH_HEIGHT + self.hover)
            if tip[2] < PUSH_HEIGHT + 0.5 * self.hover and np.linalg.norm(tip[:2] - behind) > 0.02:
                # Lift straight up first so the fingertip never sweeps through the block.
                return np.append(tip[:2], above[2]), self.speed
            if np.linalg.norm(above - tip) < 0.02:
                self.phase = 1
            return above, self.speed
        if self.phase == 1:
            low = np.append(behind, PUSH_HEIGHT)
            if np.linalg.norm(low - tip) < 0.01:
                self.phase = 2
            return low, self.speed
        if self.phase == 2:
            # Aim a little past the contact point along the push direction: the block moves at
            # the fingertip's (speed-limited) pace, and the direction is re-aimed every tick.
            lead = min(0.03, dist + 0.005)
            return np.append(block - d * CONTACT + d * lead, PUSH_HEIGHT), self.push_speed
        return tip.copy(), 0.0

    # ----- one tick -------------------------------------------------------------------------
    def act(self, q: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        """The joint target to send now, given measured joints ``q`` and object state.

        Returns:
            (D,) joint-position target, in the embodiment's joint order and limits.
        """
        if self.q_cmd is None:
            self.reset(q, state)
        # Continue from the previous command (not the lagging measurement) so motion is smooth;
        # re-anchor if the arm was pushed far from it (e.g. blocked by contact).
        if np.max(np.abs(self.q_cmd - q)) > 0.3:
            self.q_cmd = np.asarray(q, dtype=np.float64).copy()
        tip, _ = self.kin.fk(self.q_cmd)
        if self.task == "push":
            goal, speed = self._push_goal(tip, state)
        else:
            goal, speed = self._waypoint_goal(tip), self.speed
        delta = goal - tip
        dist = float(np.linalg.norm(delta))
        # Speed ramps up with bounded acceleration and down to reach the goal without overshoot.
        self.vel = min(speed, self.vel + self.config.accel * self.dt,
                       np.sqrt(2 * self.config.accel * dist))
        step = min(dist, self.vel * self.dt)
        nxt = tip + (delta / dist * step if dist > 1e-9 else 0.0)
        q_new = self.kin.ik(self.q_cmd, nxt)
        limit = self.config.velocity_fraction * self.emb.max_velocity * self.dt
        q_new = self.q_cmd + np.clip(q_new - self.q_cmd, -limit, limit)
        self.q_cmd = q_new
        noisy = q_new + self.rng.normal(0.0, self.config.action_noise, q_new.shape)
        return self.emb.clip(noisy)

    def _snapshot(self) -> tuple:
        # Only the small mutable episode state; the kinematics (MuJoCo data) is shared.
        return (None if self.q_cmd is None else self.q_cmd.copy(), getattr(self, "vel", 0.0),
                getattr(self, "phase", 0), [w.copy() for w in getattr(self, "waypoints", [])],
                copy.deepcopy(self.rng.bit_generator.state))

    def _restore(self, saved: tuple) -> None:
        self.q_cmd, self.vel, self.phase, self.waypoints, rng_state = saved
        self.rng.bit_generator.state = rng_state

    def plan(self, q: np.ndarray, state: dict[str, np.ndarray], horizon: int
             ) -> tuple[np.ndarray, list[tuple]]:
        """(horizon, D) targets assuming perfect tracking, and the expert state after each.

        Objects are assumed static except the pushed block, which is moved along with the
        fingertip once they touch (a kinematic push model), so push plans keep pushing. The
        expert's own progress (phase, waypoints, noise stream) is restored afterwards.

        Returns:
            The targets and one snapshot (for :meth:`restore`) after each of them.
        """
        saved = self._snapshot()
        out = np.empty((horizon, self.emb.dof))
        snaps: list[tuple] = []
        state = {k: np.array(v, dtype=np.float64) for k, v in state.items()}
        qi = np.asarray(q, dtype=np.float64)
        try:
            for i in range(horizon):
                qi = self.act(qi, state)
                out[i] = qi
                snaps.append(self._snapshot())
                if self.task == "push" and self.phase == 2:
                    tip, _ = self.kin.fk(self.q_cmd)
                    block = state["block"]
                    d = state["goal"] - block[:2]
                    d /= max(np.linalg.norm(d), 1e-6)
                    along = (tip[:2] - block[:2]) @ d
                    if along > -CONTACT:
                        block[:2] += d * (along + CONTACT)
        finally:
            self._restore(saved)
        return out, snaps

    def restore(self, snapshot: tuple) -> None:
        """Return to a state recorded by :meth:`plan`."""
        self._restore(snapshot)


class ExpertPolicy:
    """The scripted expert as a :class:`~ate_ros.core.policy_contract.ChunkPolicy` (an oracle).

    It reads object state from ``env`` directly, so it only works on that env; evaluation uses
    it to check the closed loop (scheduler, timing, success detection) independently of any
    learned policy.

    Args:
        env: The environment being evaluated.
        chunk_size: H, points per chunk.
        seed: Expert seed.
        config: Expert settings.
    """

    def __init__(self, env, chunk_size: int = 8, seed: int | None = None,
                 config: ExpertConfig | None = None) -> None:
        self.env = env
        self.chunk_size = int(chunk_size)
        self.camera_names = list(env.camera_names)
        self.expert = ScriptedExpert(env, seed=seed, config=config)
        self._episode_seed: int | None = None
        self._snaps: list[tuple] = []
        self._stamp = 0.0

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        emb = self.env.embodiment
        q = emb.from_unified(obs.qpos).astype(np.float64)
        state = self.env.task_state()
        if self._episode_seed != self.env.episode_seed:
            # New episode in the env: draw fresh expert parameters.
            self._episode_seed = self.env.episode_seed
            self.expert.reset(q, state)
        elif self._snaps:
            # Move the expert along its previous plan by the control periods that elapsed, so
            # the new chunk continues the commanded motion instead of restarting from the
            # (lagging) measured joints.
            k = int(round((obs.stamp - self._stamp) / self.env.control_period))
            if 1 <= k <= len(self._snaps):
                self.expert.restore(self._snaps[k - 1])
            else:
                self.expert.q_cmd = q.copy()
        self._stamp = obs.stamp
        chunk, self._snaps = self.expert.plan(q, state, self.chunk_size)
        return emb.to_unified(chunk.astype(np.float32))
