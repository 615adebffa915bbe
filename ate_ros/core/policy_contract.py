"""What a policy consumes and produces at run time: the contract between policies and their users.

Policies (``core/steer/policies``), the closed-loop evaluator (``core/sim``), the ROS policy node
and benchmarks all talk through :class:`PolicyObservation` and :class:`ChunkPolicy`.

Chunk timing: ``chunk[i]`` is the joint-position target for the control tick
``t_obs + (i + 1) * dt``, where ``t_obs`` is the observation time and ``dt`` the embodiment's
control period (the same convention as ``action[t]`` in episode files: sent at ``t``, reached one
period later). So a chunk predicted from the observation at ``t`` covers ``action[t : t + H]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ate_ros.core.embodiment import UNIFIED_DIM


@dataclass
class PolicyObservation:
    """One synchronised observation.

    Attributes:
        images: Camera name -> RGB uint8 (H, W, 3), already resized to the embodiment's size.
        qpos: (UNIFIED_DIM,) float32 joint positions in the unified space (zeros off-mask).
        mask: (UNIFIED_DIM,) bool, the embodiment's used slots.
        instruction: Natural-language task instruction.
        stamp: Observation time in seconds (node clock / sim time).
        env_state: Optional (E,) float32 low-dimensional environment state (object positions
            from the simulator or a perception module, the ``low_dim`` observation of
            robomimic / Diffusion Policy); its layout is the producer's (for the simulation:
            ``ate_ros.core.sim.object_labels.ENV_STATE_NAMES``).
    """

    images: dict[str, np.ndarray]
    qpos: np.ndarray
    mask: np.ndarray
    instruction: str = ""
    stamp: float = 0.0
    extras: dict = field(default_factory=dict)
    env_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.qpos = np.asarray(self.qpos, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.qpos.shape != (UNIFIED_DIM,) or self.mask.shape != (UNIFIED_DIM,):
            raise ValueError(
                f"qpos and mask must have shape ({UNIFIED_DIM},), got {self.qpos.shape} and "
                f"{self.mask.shape}")
        if not np.all(np.isfinite(self.qpos)):
            raise ValueError("observation qpos contains NaN or inf")
        if self.env_state is not None:
            self.env_state = np.asarray(self.env_state, dtype=np.float32)
            if self.env_state.ndim != 1:
                raise ValueError(f"env_state must be 1-D, got shape {self.env_state.shape}")
            if not np.all(np.isfinite(self.env_state)):
                raise ValueError("observation env_state contains NaN or inf")
        for name, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {name!r} must be uint8 (H, W, 3), got {img.dtype} "
                                 f"{img.shape}")


class PolicyFeatureError(ValueError):
    """A caller asked a policy for something only some policies have (inference-time
    guidance, a denoising-step override...): the message names the feature and the policy."""


@runtime_checkable
class ChunkPolicy(Protocol):
    """Anything that turns an observation into an action chunk in the unified space."""

    chunk_size: int
    """H, the number of points in a chunk."""

    camera_names: list[str]
    """Cameras the policy expects in ``PolicyObservation.images``."""

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        """Return an (H, UNIFIED_DIM) float32 chunk of joint-position targets (zeros off-mask)."""
        ...


def supports_rtc(policy: object) -> bool:
    """Whether ``policy.predict_chunk`` takes a committed prefix for real-time chunking
    (keywords ``prefix``, (P, UNIFIED_DIM) joint targets for the chunk's first P times, and
    ``inference_delay``, the points of it that execute while the chunk is computed). A policy
    whose model decides at load time (a LeRobot checkpoint: only some have RTC) says so in a
    ``takes_prefix`` attribute, which wins over the signature."""
    import inspect

    takes = getattr(policy, "takes_prefix", None)
    if takes is not None:
        return bool(takes)

    try:
        params = inspect.signature(policy.predict_chunk).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "prefix" in params and "inference_delay" in params
