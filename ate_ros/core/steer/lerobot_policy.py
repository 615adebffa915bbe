"""A LeRobot checkpoint behind our run-time policy contract (``ate_ros.core.policy_io``).

:class:`LeRobotChunkPolicy` satisfies :class:`~ate_ros.core.policy_io.ChunkPolicy`
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
``select_action`` does) -> its post-processor -> the D action columns written into the
embodiment's slots of a (H, 128) chunk.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.lerobot_compat import require_lerobot
from ate_ros.core.policy_io import PolicyObservation

logger = logging.getLogger(__name__)

OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
ACTION = "action"
TASK = "task"


class LeRobotChunkPolicy:
    """Runs a LeRobot policy (with its own pre/post-processors) on our observations.

    Args:
        policy: a LeRobot ``PreTrainedPolicy`` (eval mode is set here).
        preprocessor, postprocessor: its processor pipelines.
        embodiment: maps the D action/state columns to unified slots (same order as the
            dataset's joint names, which ``bag2dataset --format lerobot`` writes).
    """

    def __init__(self, policy, preprocessor, postprocessor, embodiment: Embodiment) -> None:
        cfg = policy.config
        D = cfg.output_features[ACTION].shape[0]
        if D != embodiment.dof:
            raise ValueError(f"LeRobot policy acts on {D} dims, embodiment {embodiment.name!r} "
                             f"has {embodiment.dof} joints")
        self.policy = policy.eval()
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.embodiment = embodiment
        self.image_keys = list(cfg.image_features)
        self.camera_names = [k[len(OBS_IMAGES) + 1:] for k in self.image_keys]
        self.chunk_size = int(getattr(cfg, "n_action_steps", None) or cfg.chunk_size)
        self.model_id = f"lerobot:{cfg.type}"
        self.device = next(policy.parameters()).device
        policy.reset()

    @classmethod
    def from_pretrained(cls, path: str | Path, embodiment: Embodiment,
                        device: str = "cpu") -> LeRobotChunkPolicy:
        """Load a LeRobot checkpoint folder (``save_pretrained`` of policy and processors)."""
        require_lerobot()
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        cfg = PreTrainedConfig.from_pretrained(str(path))
        cfg.device = torch.device(device).type
        policy = get_policy_class(cfg.type).from_pretrained(str(path), config=cfg)
        policy.to(device)
        pre, post = make_pre_post_processors(
            cfg, pretrained_path=str(path),
            preprocessor_overrides={"device_processor": {"device": cfg.device}})
        return cls(policy, pre, post, embodiment)

    def reset(self) -> None:
        """Forget the observation history (a new episode)."""
        self.policy.reset()

    def frame(self, obs: PolicyObservation) -> dict:
        """Our observation -> a LeRobot frame (unbatched, before the pre-processor)."""
        frame = {OBS_STATE: torch.from_numpy(obs.qpos[self.embodiment.slots].copy()),
                 TASK: obs.instruction}
        for key, cam in zip(self.image_keys, self.camera_names):
            if cam not in obs.images:
                raise ValueError(f"observation has no image from camera {cam!r} (the LeRobot "
                                 f"policy reads {self.camera_names})")
            img = torch.from_numpy(np.ascontiguousarray(obs.images[cam]))
            frame[key] = img.permute(2, 0, 1).to(torch.float32) / 255.0
        return frame

    @torch.no_grad()
    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        """(H, 128) float32 joint targets, zeros off the embodiment's slots."""
        batch = self.preprocessor(self.frame(obs))
        policy = self.policy
        diffusion = getattr(policy, "diffusion", None)
        saved_steps = None
        if num_steps and diffusion is not None:
            saved_steps, diffusion.num_inference_steps = diffusion.num_inference_steps, num_steps
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                actions = self._chunk(batch)
        finally:
            if saved_steps is not None:
                diffusion.num_inference_steps = saved_steps
        actions = self.postprocessor(actions)  # (1, H, D) joint units, on CPU
        out = np.zeros((actions.shape[1], UNIFIED_DIM), dtype=np.float32)
        out[:, self.embodiment.slots] = actions[0].float().numpy()
        return out

    def _chunk(self, batch: dict) -> torch.Tensor:
        policy = self.policy
        if policy.name != "diffusion":
            return policy.predict_action_chunk(batch)
        from lerobot.policies.utils import populate_queues

        # DiffusionPolicy.select_action, up to the chunk: stack cameras, update the history.
        batch = dict(batch)
        batch.pop(ACTION, None)  # the pre-processor's empty action slot, as select_action drops
        if policy.config.image_features:
            batch[OBS_IMAGES] = torch.stack([batch[k] for k in policy.config.image_features],
                                            dim=-4)
        policy._queues = populate_queues(policy._queues, batch)
        return policy.predict_action_chunk(batch)


__all__ = ["LeRobotChunkPolicy"]
