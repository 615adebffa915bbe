"""A LeRobot checkpoint behind our run-time policy contract (``ate_ros.core.policy_contract``).

:class:`LeRobotChunkPolicy` satisfies :class:`~ate_ros.core.policy_contract.ChunkPolicy`
(``chunk_size``, ``camera_names``, ``predict_chunk(obs, num_steps, seed)`` -> (H, 128)), the
interface ``policy_node``, ``ate-ros run`` and the simulation evaluator call on our own policy,
so a node switches to LeRobot with one factory line::

    if is_lerobot_spec(config.policy):
        return LeRobotChunkPolicy.from_pretrained(lerobot_path(config.policy), embodiment,
                                                  device=config.device)

Per chunk: our :class:`PolicyObservation` -> LeRobot's frame (``observation.state`` = the
embodiment's joints in slot order, ``observation.images.<cam>`` = float CHW in [0, 1],
``task`` = the instruction) -> the checkpoint's own pre-processor -> the policy's
``predict_action_chunk`` (``DiffusionPolicy``: after filling its observation queues the way
``select_action`` does) -> its post-processor -> the first ``n_action_steps`` actions (what
``select_action`` executes) with their D columns written into the embodiment's slots of a
(H, 128) chunk. ``observation.environment_state``, when the policy reads it, is our
``env_state`` (``env_state_dim`` tells the node and perception to provide it).

Observation history (policies with ``n_obs_steps > 1``): each ``predict_chunk`` pushes the
observation into the policy's queues, as ``select_action`` does. An observation stamped like the
previous one *replaces* it (the node's extra samples, retries); one stamped earlier starts a new
episode (``reset``: the simulation evaluator restarts time at 0 every episode). Callers that
predict from a made-up observation (a warm-up) call :meth:`LeRobotChunkPolicy.reset` after it.

Real-time chunking (``chunking: rtc``) uses LeRobot's own RTC where the policy has it (pi0,
pi0.5, SmolVLA: their config's ``rtc_config``, their sampler's ``RTCProcessor``):
``predict_chunk(prefix=..., inference_delay=d)`` maps the committed prefix onto the policy's D
action columns, normalises it with the checkpoint's pre-processor and hands it to
``predict_action_chunk(batch, inference_delay=d, prev_chunk_left_over=...)``, as LeRobot's own
asynchronous loop does with the unexecuted rest of its previous chunk. :meth:`set_rtc` maps our
:class:`~ate_ros.core.steer.rtc.RTCConfig` onto LeRobot's (the schedule, beta, the execution
horizon); LeRobot 0.4's guidance takes the denoiser's Jacobian as identity, so
``guidance_gradient: vjp`` cannot be honoured and is refused. Policies without RTC in LeRobot
(diffusion, ACT, ...) take no prefix (:attr:`LeRobotChunkPolicy.takes_prefix` is false) and
:meth:`set_rtc` refuses them.

What our own policy has and a LeRobot checkpoint has not: inference-time guidance
(:meth:`LeRobotChunkPolicy.set_inference_guidance` raises
:class:`~ate_ros.core.policy_contract.PolicyFeatureError`), a denoising-step override for policies
without one (``num_steps``: diffusion, pi0, pi0.5 and SmolVLA have one), stored instruction
embeddings (``known_instructions`` is empty) and a receding horizon inside the chunk
(``n_action_steps == chunk_size``: every point of a chunk is executed, then a new one is asked
for, as ``select_action`` does).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.lerobot_compat import lerobot_errors
from ate_ros.core.policy_contract import PolicyFeatureError, PolicyObservation
from ate_ros.core.steer.lerobot.checkpoint import CONFIG_FILE, load_lerobot_checkpoint
from ate_ros.core.training.files import CheckpointError

if TYPE_CHECKING:
    from ate_ros.core.steer.rtc.configuration_rtc import RTCConfig

logger = logging.getLogger(__name__)

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
OBS_IMAGES = "observation.images"
ACTION = "action"
TASK = "task"


class LeRobotChunkPolicy:
    """Runs a LeRobot policy (with its own pre/post-processors) on our observations.

    Args:
        policy: a LeRobot ``PreTrainedPolicy`` (eval mode is set here).
        preprocessor, postprocessor: its processor pipelines.
        embodiment: maps the D action/state columns to unified slots (same order as the
            dataset's joint names, which ``bag2dataset --format lerobot`` writes); its cameras
            must include the policy's, at the policy's image size.

    Raises:
        ValueError: the action or state width is not the embodiment's joint count, or the
            embodiment lacks a camera the policy reads (or has it at another size).
    """

    known_instructions: tuple[str, ...] = ()
    """Our policies store the embeddings of their training instructions; LeRobot's do not."""

    def __init__(self, policy, preprocessor, postprocessor, embodiment: Embodiment) -> None:
        cfg = policy.config
        D = cfg.output_features[ACTION].shape[0]
        if D != embodiment.dof:
            raise ValueError(f"LeRobot policy acts on {D} dims, embodiment {embodiment.name!r} "
                             f"has {embodiment.dof} joints {embodiment.joint_names}")
        state = cfg.input_features.get(OBS_STATE)
        if state is not None and state.shape[0] != embodiment.dof:
            raise ValueError(f"LeRobot policy reads a {state.shape[0]}-dim {OBS_STATE}, "
                             f"embodiment {embodiment.name!r} has {embodiment.dof} joints")
        self.policy = policy.eval()
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.embodiment = embodiment
        self.image_keys = list(cfg.image_features)
        self.camera_names = [k[len(OBS_IMAGES) + 1:] for k in self.image_keys]
        self._check_cameras(cfg)
        env = cfg.input_features.get(OBS_ENV_STATE)
        self.env_state_dim = int(env.shape[0]) if env is not None else 0
        self.chunk_size = int(getattr(cfg, "n_action_steps", None) or cfg.chunk_size)
        # The chunk is what select_action executes: no receding horizon inside it.
        self.n_action_steps = self.chunk_size
        self.model_id = f"lerobot:{cfg.type}"
        self.device = next(policy.parameters()).device
        self._last_stamp: float | None = None
        policy.reset()

    def _check_cameras(self, cfg) -> None:
        cams = {c.name: c for c in self.embodiment.cameras}
        for key, name in zip(self.image_keys, self.camera_names):
            cam = cams.get(name)
            if cam is None:
                raise ValueError(f"LeRobot policy reads camera {name!r} ({key}); embodiment "
                                 f"{self.embodiment.name!r} has cameras {sorted(cams)} (rename "
                                 "the camera in the embodiment YAML, or the policy's feature)")
            shape = tuple(cfg.image_features[key].shape)  # (C, H, W)
            if shape[1:] != (cam.height, cam.width):
                raise ValueError(f"LeRobot policy reads {name!r} at {shape[2]}x{shape[1]} "
                                 f"(WxH), embodiment {self.embodiment.name!r} delivers "
                                 f"{cam.width}x{cam.height}; set the camera's width/height")

    @classmethod
    def from_pretrained(cls, path: str | Path, embodiment: Embodiment,
                        device: str = "cpu") -> LeRobotChunkPolicy:
        """Load a LeRobot checkpoint folder (``save_pretrained`` of policy and processors).

        Raises:
            FileNotFoundError: the folder or one of its checkpoint files is missing.
            CheckpointError: a file LeRobot cannot read, or a checkpoint that does not fit
                ``embodiment`` (see the class), naming the file
                (:func:`~ate_ros.core.steer.lerobot.checkpoint.load_lerobot_checkpoint`).
        """
        loaded = load_lerobot_checkpoint(path, device)
        with lerobot_errors(Path(path) / CONFIG_FILE, "its features do not fit embodiment "
                            f"{embodiment.name!r}", CheckpointError):
            return cls(loaded.policy, loaded.preprocessor, loaded.postprocessor, embodiment)

    def reset(self) -> None:
        """Forget the observation history (a new episode)."""
        self.policy.reset()
        self._last_stamp = None

    def set_inference_guidance(self, *args, **kwargs) -> None:
        """Not available: LeRobot's samplers have no hook for latent steering at run time.

        Raises:
            PolicyFeatureError: always (steer a LeRobot policy at training time instead).
        """
        raise PolicyFeatureError(
            f"inference-time guidance is not available for LeRobot policies ({self.model_id}): "
            "its sampler has no steering hook; fine-tune it with ATE guidance instead "
            "(`ate-ros steer --policy lerobot:<dir> --vae ...`)")

    @property
    def takes_prefix(self) -> bool:
        """Whether LeRobot has real-time chunking for this policy (its config carries an
        ``rtc_config`` and the policy builds LeRobot's ``RTCProcessor``: pi0, pi0.5, SmolVLA)."""
        return (hasattr(self.policy.config, "rtc_config")
                and callable(getattr(self.policy, "init_rtc_processor", None)))

    def set_rtc(self, config: RTCConfig | None) -> None:
        """Turn on LeRobot's own real-time chunking with our settings (``None``: defaults).

        Raises:
            PolicyFeatureError: the policy has no RTC in LeRobot, or ``config`` asks for the
                vector-Jacobian product LeRobot's RTCProcessor does not compute.
        """
        if not self.takes_prefix:
            raise PolicyFeatureError(
                f"real-time chunking is not available for LeRobot policy {self.model_id}: "
                "LeRobot implements it for pi0, pi0.5 and SmolVLA only (lerobot/policies/rtc); "
                "use chunking sync, replace, crossfade or ensemble")
        from ate_ros.core.steer.rtc.configuration_rtc import RTCConfig

        config = config or RTCConfig()
        if config.guidance_gradient == "vjp":
            raise PolicyFeatureError(
                f"rtc.guidance_gradient 'vjp': LeRobot's RTCProcessor ({self.model_id}) takes "
                "the denoiser's Jacobian as identity; use 'auto' or 'identity'")
        from lerobot.configs.types import RTCAttentionSchedule
        from lerobot.policies.rtc.configuration_rtc import RTCConfig as LeRobotRTCConfig

        self.policy.config.rtc_config = LeRobotRTCConfig(
            enabled=True,
            prefix_attention_schedule=RTCAttentionSchedule(
                config.prefix_attention_schedule.upper()),
            max_guidance_weight=float(config.max_guidance_weight),
            execution_horizon=int(config.execution_horizon))
        self.policy.init_rtc_processor()  # hands the new processor to the sampler too

    def _rtc_enabled(self) -> bool:
        rtc = getattr(self.policy.config, "rtc_config", None)
        return rtc is not None and rtc.enabled

    def _leftover(self, prefix: np.ndarray) -> torch.Tensor:
        """(P, 128) committed joint targets -> (1, P, D) in the policy's normalised action
        space (the space its sampler runs in, where LeRobot's RTC compares chunks)."""
        from lerobot.processor import NormalizerProcessorStep, TransitionKey

        actions = torch.as_tensor(np.asarray(prefix, dtype=np.float32)[:, self.embodiment.slots])
        actions = actions.unsqueeze(0).to(self.device)
        for step in self.preprocessor.steps:
            if isinstance(step, NormalizerProcessorStep):
                actions = step({TransitionKey.ACTION: actions})[TransitionKey.ACTION]
        return actions

    @property
    def supports_num_steps(self) -> bool:
        """Whether ``predict_chunk(num_steps=...)`` can change the sampler's step count."""
        return self._steps_setting() is not None

    def _steps_setting(self) -> tuple[object, str] | None:
        """(object, attribute) holding the denoising / integration step count, if any."""
        diffusion = getattr(self.policy, "diffusion", None)
        if diffusion is not None and hasattr(diffusion, "num_inference_steps"):
            return diffusion, "num_inference_steps"
        cfg = self.policy.config
        for attr in ("num_inference_steps", "num_steps"):  # pi0 / pi0.5, SmolVLA
            if isinstance(getattr(cfg, attr, None), int):
                return cfg, attr
        return None

    def frame(self, obs: PolicyObservation) -> dict:
        """Our observation -> a LeRobot frame (unbatched, before the pre-processor)."""
        frame = {OBS_STATE: torch.from_numpy(obs.qpos[self.embodiment.slots].copy()),
                 TASK: obs.instruction}
        if self.env_state_dim:
            env = obs.env_state
            if env is None or env.shape != (self.env_state_dim,):
                got = "none" if env is None else f"shape {env.shape}"
                raise ValueError(f"LeRobot policy reads a {self.env_state_dim}-dim "
                                 f"{OBS_ENV_STATE}; the observation has {got}")
            frame[OBS_ENV_STATE] = torch.from_numpy(env.astype(np.float32))
        for key, cam in zip(self.image_keys, self.camera_names):
            if cam not in obs.images:
                raise ValueError(f"observation has no image from camera {cam!r} (the LeRobot "
                                 f"policy reads {self.camera_names})")
            img = torch.from_numpy(np.ascontiguousarray(obs.images[cam]))
            frame[key] = img.permute(2, 0, 1).to(torch.float32) / 255.0
        return frame

    @torch.no_grad()
    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None, prefix: np.ndarray | None = None,
                      inference_delay: int = 0) -> np.ndarray:
        """(H, 128) float32 joint targets, zeros off the embodiment's slots.

        ``prefix`` (P, 128): the committed joint targets for the chunk's first P times, of
        which the first ``inference_delay`` execute while it is computed; LeRobot's RTC
        inpaints toward them (default settings unless :meth:`set_rtc` was called).

        Raises:
            PolicyFeatureError: ``num_steps`` for a policy without a step count, or a
                ``prefix`` for a policy without RTC in LeRobot.
            ValueError: the observation lacks a camera or the environment state the policy reads.
        """
        rtc: dict = {}
        if prefix is not None:
            if not self._rtc_enabled():
                self.set_rtc(None)  # raises for a policy without RTC
            rtc = {"inference_delay": int(inference_delay),
                   "prev_chunk_left_over": self._leftover(prefix)}
        setting = self._steps_setting() if num_steps else None
        if num_steps and setting is None:
            raise PolicyFeatureError(f"num_steps={num_steps}: LeRobot policy {self.model_id} has "
                                     "no denoising / integration step count to override "
                                     "(use num_steps 0)")
        frame = self.frame(obs)
        same = self._last_stamp is not None and obs.stamp == self._last_stamp
        if self._last_stamp is not None and obs.stamp < self._last_stamp:
            self.reset()  # time went back: a new episode
        self._last_stamp = obs.stamp
        batch = self.preprocessor(frame)
        saved_steps = None
        if setting is not None:
            holder, attr = setting
            saved_steps = getattr(holder, attr)
            setattr(holder, attr, int(num_steps))
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                actions = self._chunk(batch, replace_last=same, **rtc)
        finally:
            if setting is not None:
                setattr(setting[0], setting[1], saved_steps)
        # select_action executes the first n_action_steps of predict_action_chunk's output
        # (DiffusionPolicy's already is that long).
        actions = self.postprocessor(actions[:, :self.chunk_size])  # (1, H, D) joint units, CPU
        out = np.zeros((actions.shape[1], UNIFIED_DIM), dtype=np.float32)
        out[:, self.embodiment.slots] = actions[0].float().numpy()
        return out

    def _chunk(self, batch: dict, replace_last: bool = False, **rtc) -> torch.Tensor:
        policy = self.policy
        if policy.name != "diffusion":
            return policy.predict_action_chunk(batch, **rtc)
        from lerobot.policies.utils import populate_queues

        # DiffusionPolicy.select_action, up to the chunk: stack cameras, update the history.
        batch = dict(batch)
        batch.pop(ACTION, None)  # the pre-processor's empty action slot, as select_action drops
        if policy.config.image_features:
            batch[OBS_IMAGES] = torch.stack([batch[k] for k in policy.config.image_features],
                                            dim=-4)
        if replace_last:  # the same observation again: it takes its own place in the history
            for key, queue in policy._queues.items():
                if key != ACTION and key in batch and len(queue) == queue.maxlen:
                    queue.pop()
        policy._queues = populate_queues(policy._queues, batch)
        return policy.predict_action_chunk(batch)


__all__ = ["LeRobotChunkPolicy"]
