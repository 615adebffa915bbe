"""Policies with no weights (``hold``, ``wave``) for bring-up, dry runs and tests of the graph."""

from __future__ import annotations

import numpy as np

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.policy_contract import PolicyObservation


class HoldPolicy:
    """Holds the observed position (every chunk point = current qpos). For bring-up."""

    def __init__(self, embodiment: Embodiment, chunk_size: int = 16) -> None:
        self.embodiment = embodiment
        self.chunk_size = chunk_size
        self.camera_names = [c.name for c in embodiment.cameras]

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        return np.repeat(obs.qpos[None].astype(np.float32), self.chunk_size, axis=0)


class WavePolicy(HoldPolicy):
    """Moves every joint sinusoidally around the middle of its range (time from ``obs.stamp``).

    Predictable, visibly moving, deterministic in the observation time, so it exercises the
    whole graph (perception -> policy -> executor -> robot) without a trained model. ``seed``
    shifts the phase, which makes extra samples visibly different.
    """

    def __init__(self, embodiment: Embodiment, chunk_size: int = 16, amplitude: float = 0.25,
                 period: float = 4.0) -> None:
        super().__init__(embodiment, chunk_size)
        self.amplitude = amplitude
        self.period = period

    def targets(self, t: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(N,) times -> (N, D) joint targets."""
        emb = self.embodiment
        mid = (emb.lower + emb.upper) / 2
        amp = np.minimum(self.amplitude, (emb.upper - emb.lower) / 4)
        phase = 0.0 if seed is None else 0.3 * (seed % 7)
        k = np.arange(emb.dof)
        return mid + amp * np.sin(2 * np.pi * np.asarray(t)[:, None] / self.period + phase
                                  + 0.5 * k)

    def predict_chunk(self, obs: PolicyObservation, num_steps: int | None = None,
                      seed: int | None = None) -> np.ndarray:
        dt = self.embodiment.control_period
        t = obs.stamp + dt * np.arange(1, self.chunk_size + 1)
        out = np.zeros((self.chunk_size, UNIFIED_DIM), dtype=np.float32)
        out[:, self.embodiment.slots] = self.targets(t, seed)
        return out


BUILTIN_POLICIES = {"hold": HoldPolicy, "wave": WavePolicy}


def builtin_policy(name: str, embodiment: Embodiment):
    """A built-in policy by name, or None when ``name`` is not one."""
    cls = BUILTIN_POLICIES.get(name)
    return None if cls is None else cls(embodiment)
