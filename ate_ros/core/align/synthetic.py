"""Small synthetic alignment datasets (toy arms with smooth joint trajectories).

Used by the tests, the benchmark and quick demos: each episode is a smooth random trajectory
(a sum of a few low-frequency sinusoids per joint, inside the joint limits), written in the
project's episode format with both ``qpos`` and ``action`` (action leads qpos by one step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ate_ros.core.data.episode_format import Episode, write_episode
from ate_ros.core.embodiment import Embodiment, JointSpec


def toy_arm(name: str, dof: int, first_slot: int = 0, limit: float = 2.0,
            rate_hz: float = 10.0) -> Embodiment:
    """A ``dof``-joint arm in slots ``first_slot ...`` with symmetric limits."""
    return Embodiment(name=name, control_rate_hz=rate_hz, joints=[
        JointSpec(name=f"{name}_j{i}", slot=first_slot + i, lower=-limit, upper=limit)
        for i in range(dof)])


def smooth_trajectories(n: int, length: int, dof: int, seed: int, amplitude: float = 0.8,
                        offset: float = 0.0, freq: tuple[float, float] = (0.02, 0.08),
                        harmonics: int = 2) -> np.ndarray:
    """(n, length, dof) float32 sums of sinusoids (cycles per step in ``freq``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :, None]
    out = np.zeros((n, length, dof))
    for _ in range(harmonics):
        f = rng.uniform(*freq, size=(n, 1, dof))
        ph = rng.uniform(0, 2 * np.pi, size=(n, 1, dof))
        a = rng.uniform(0.3, 1.0, size=(n, 1, dof)) * amplitude / harmonics
        out += a * np.sin(2 * np.pi * f * t + ph)
    out += offset + rng.normal(0, 0.1, size=(n, 1, dof))
    return out.astype(np.float32)


def write_toy_dataset(root: str | Path, embodiment: Embodiment, n_train: int = 16,
                      n_val: int = 4, length: int = 60, seed: int = 0, amplitude: float = 0.8,
                      offset: float = 0.0, with_action: bool = True) -> Path:
    """Write ``root/train`` and ``root/val`` episodes for ``embodiment``; returns ``root``."""
    root = Path(root)
    traj = smooth_trajectories(n_train + n_val, length + 1, embodiment.dof, seed, amplitude,
                               offset)
    traj = np.clip(traj, embodiment.lower, embodiment.upper).astype(np.float32)
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        ep = Episode(qpos=traj[i, :-1], action=traj[i, 1:] if with_action else None,
                     embodiment=embodiment.name, joint_names=embodiment.joint_names,
                     slots=embodiment.slots, rate_hz=embodiment.control_rate_hz)
        write_episode(root / split / f"episode_{i:04d}.hdf5", ep)
    embodiment.to_yaml(root / "embodiment.yaml")
    return root
