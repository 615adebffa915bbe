"""The MuJoCo tabletop environment shared by recording, evaluation and the ROS sim robot node.

One :class:`SimEnv` owns one model, one ``MjData`` and (lazily) one renderer, closed by
:meth:`SimEnv.close`. Two levels of API:

* episode level: :meth:`SimEnv.reset`, :meth:`SimEnv.step` (one control period), success/done;
* clock level for a node running simulated time: :meth:`SimEnv.set_targets`,
  :meth:`SimEnv.advance`, :meth:`SimEnv.render`, :meth:`SimEnv.qpos`.

Determinism: the same seed gives the same initial state, and the same targets give the same
rollout (MuJoCo is deterministic on one thread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mujoco
import numpy as np

from ate_ros.core.embodiment import Embodiment, load_embodiment
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.sim.arm_kinematics import ArmKinematics
from ate_ros.core.sim.arms import arm_spec_for, build_scene_xml
from ate_ros.core.sim.tasks import SceneHandles, Task, make_task

logger = logging.getLogger(__name__)

PHYSICS_TIMESTEP = 0.002
"""Physics step (s): 50 substeps per 10 Hz control period."""
DEFAULT_IMAGE_SIZE = (96, 96)
INIT_JOINT_NOISE = 0.08
"""Half-width (rad) of the uniform noise added to the home posture at reset."""


@dataclass
class SimObservation:
    """What a robot would measure at one instant.

    Attributes:
        qpos: (D,) joint positions in the embodiment's joint order.
        qvel: (D,) joint velocities.
        images: Camera name -> uint8 (H, W, 3); empty if not rendered.
        instruction: The episode's instruction.
        time: Simulated time (s) since reset.
        env_state: (E,) object offsets from the fingertip, and the fingertip (layout
            ``object_labels.ENV_STATE_NAMES``): the low-dimensional observation track.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    instruction: str = ""
    time: float = 0.0
    env_state: np.ndarray | None = None

    def to_policy(self, emb: Embodiment) -> PolicyObservation:
        """The observation in the unified space, as policies consume it."""
        return PolicyObservation(images=self.images, qpos=emb.to_unified(self.qpos.astype(
            np.float32)), mask=emb.mask, instruction=self.instruction, stamp=self.time,
            env_state=self.env_state)


def check_sim_inputs(embodiment: str | Embodiment, task: str) -> Embodiment:
    """The embodiment, once it and ``task`` are known to make a scene (commands check before
    they create an output); ``EmbodimentError`` / ``ArmSpecError`` / ``ValueError`` name what
    is wrong."""
    emb = load_embodiment(embodiment)
    arm_spec_for(emb)
    make_task(task)
    return emb


class SimEnv:
    """A simulated arm on the tabletop doing one task.

    Args:
        embodiment: A simulated embodiment (name, YAML path or object).
        task: Task name (``reach``, ``push``, ``pick_color``).
        seed: Seed of the episode stream; :meth:`reset` without a seed draws the next episode.
        image_size: (height, width) of rendered images; ``None`` uses the embodiment's
            first camera size.
        control_rate_hz: Rate of :meth:`step`; ``None`` uses the embodiment's.
    """

    def __init__(self, embodiment: str | Embodiment, task: str, seed: int | None = None,
                 image_size: tuple[int, int] | None = None,
                 control_rate_hz: float | None = None) -> None:
        self.embodiment = load_embodiment(embodiment)
        self.spec = arm_spec_for(self.embodiment)
        self.task: Task = make_task(task)
        emb = self.embodiment
        if image_size is None:
            cam = emb.cameras[0] if emb.cameras else None
            image_size = (cam.height, cam.width) if cam else DEFAULT_IMAGE_SIZE
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if min(self.image_size) <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {image_size}")
        self.camera_names = [c.name for c in emb.cameras] or ["front"]
        self.control_rate_hz = float(control_rate_hz or emb.control_rate_hz)
        self.model = mujoco.MjModel.from_xml_string(
            build_scene_xml(emb, timestep=PHYSICS_TIMESTEP))
        self.data = mujoco.MjData(self.model)
        self.substeps = max(1, round(1.0 / (self.control_rate_hz * PHYSICS_TIMESTEP)))
        self.dof = emb.dof
        # Arm joints are the first D joints of the model (bodies are built base to tip).
        self._qadr = np.array([self.model.joint(n).qposadr[0] for n in emb.joint_names])
        self._vadr = np.array([self.model.joint(n).dofadr[0] for n in emb.joint_names])
        ee = emb.ee_link or "ee"
        self.scene = SceneHandles.from_model(self.model, self.data, ee)
        self.kinematics = ArmKinematics(self.model, self.dof, ee, emb.lower, emb.upper,
                                        np.asarray(self.spec.home))
        self._seed_seq = np.random.SeedSequence(seed)
        self._renderer: mujoco.Renderer | None = None
        self._residual = 0.0
        self.episode_seed: int | None = None
        self.instruction = ""
        self._target = np.asarray(self.spec.home, dtype=np.float64)

    # ----- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the renderer (its GL context); the env cannot render afterwards."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- episode level --------------------------------------------------------------------
    def reset(self, seed: int | None = None, render: bool = True) -> SimObservation:
        """Start an episode: home posture plus noise, task objects at random places.

        Args:
            seed: Episode seed; ``None`` takes the next seed from the env's seed stream.
            render: Include camera images in the returned observation.
        """
        if seed is None:
            seed = int(self._seed_seq.spawn(1)[0].generate_state(1)[0])
        self.episode_seed = int(seed)
        rng = np.random.default_rng(self.episode_seed)
        mujoco.mj_resetData(self.model, self.data)
        self.scene.park_all()
        emb = self.embodiment
        q0 = np.asarray(self.spec.home) + rng.uniform(-INIT_JOINT_NOISE, INIT_JOINT_NOISE,
                                                      self.dof)
        q0 = emb.clip(q0)
        self.data.qpos[self._qadr] = q0
        self.instruction = self.task.reset(self.scene, rng)
        self.set_targets(q0)
        self._residual = 0.0
        mujoco.mj_forward(self.model, self.data)
        return self.observe(render)

    def step(self, target_q: np.ndarray, render: bool = True) -> SimObservation:
        """Command ``target_q`` and simulate one control period."""
        self.set_targets(target_q)
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self._sync_kinematics()
        return self.observe(render)

    def observe(self, render: bool = True) -> SimObservation:
        images = {c: self.render(c) for c in self.camera_names} if render else {}
        return SimObservation(qpos=self.qpos(), qvel=self.qvel(), images=images,
                              instruction=self.instruction, time=self.time,
                              env_state=self.environment_state())

    def environment_state(self) -> np.ndarray:
        """(E,) float32 object offsets and fingertip now (``object_labels.ENV_STATE_NAMES``)."""
        from ate_ros.core.sim.object_labels import environment_state

        return environment_state(self)

    def success(self) -> bool:
        return self.task.success(self.scene)

    def failed(self) -> bool:
        return self.task.failed(self.scene)

    def done(self) -> bool:
        """Success, unrecoverable failure, or the task's time limit reached."""
        return self.success() or self.failed() or self.time >= self.task.time_limit - 1e-9

    @property
    def max_steps(self) -> int:
        """Control periods in the task's time limit."""
        return int(round(self.task.time_limit * self.control_rate_hz))

    def task_state(self) -> dict[str, np.ndarray]:
        """Privileged object state for scripted experts."""
        return self.task.state(self.scene)

    # ----- clock level ----------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated seconds since reset."""
        return float(self.data.time)

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    def set_targets(self, q: np.ndarray) -> None:
        """Set the position actuators' targets (clipped into the joint limits)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.dof,):
            raise ValueError(f"{self.embodiment.name}: target must have shape ({self.dof},), "
                             f"got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("target contains NaN or inf")
        self._target = self.embodiment.clip(q)
        self.data.ctrl[:self.dof] = self._target

    @property
    def target(self) -> np.ndarray:
        return self._target.copy()

    def advance(self, seconds: float) -> int:
        """Simulate ``seconds`` of physics; fractions of a time step carry over to the next call.

        Returns:
            The number of physics steps taken.
        """
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative duration ({seconds})")
        total = seconds + self._residual
        n = int(np.floor(total / PHYSICS_TIMESTEP + 1e-9))
        self._residual = total - n * PHYSICS_TIMESTEP
        if n:
            mujoco.mj_step(self.model, self.data, nstep=n)
            self._sync_kinematics()
        return n

    def set_posture(self, q: np.ndarray) -> None:
        """Teleport the arm to ``q`` (clipped into its limits), at rest, and hold it there."""
        q = self.embodiment.clip(np.asarray(q, dtype=np.float64))
        self.data.qpos[self._qadr] = q
        self.data.qvel[self._vadr] = 0.0
        self.set_targets(q)
        mujoco.mj_forward(self.model, self.data)

    def _sync_kinematics(self) -> None:
        # mj_step leaves body/site poses at the start of its last step; recompute them from the
        # final qpos so success checks, ee_position() and renders match the reported joints.
        mujoco.mj_kinematics(self.model, self.data)

    def qpos(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def qvel(self) -> np.ndarray:
        return self.data.qvel[self._vadr].copy()

    def render(self, camera: str = "front") -> np.ndarray:
        """(H, W, 3) uint8 RGB from ``camera`` at the current state."""
        if self._renderer is None:
            h, w = self.image_size
            self._renderer = mujoco.Renderer(self.model, height=h, width=w)
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()

    # ----- kinematics -----------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        """(3,) fingertip position now (world frame)."""
        return self.data.site_xpos[self.scene.tip_site].copy()

    def ee_positions(self, qs: np.ndarray) -> np.ndarray:
        """(N, D) joint configurations -> (N, 3) fingertip positions (forward kinematics)."""
        return self.kinematics.ee_positions(qs)
