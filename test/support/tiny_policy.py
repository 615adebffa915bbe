"""Tiny VLA policies, toy embodiments and datasets that the policy tests build (a few thousand
weights: fast on one CPU core, the same shapes and code paths as the real policy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ate_ros.core.data.policy_dataset import PolicyDataset
from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.steer.policies import VLAConfig
from ate_ros.core.steer.policies.text_encoder import embed_instructions

TEXT_DIM = 16
"""Width of the hash instruction embedding of the tiny policies."""

TINY_VLA = dict(chunk_size=4, image_size=16, vision_channels=[8, 16], d_model=32, n_heads=4,
                n_layers=2, ffn_dim=64, text_encoder="hash", text_dim=TEXT_DIM,
                num_train_timesteps=50, num_inference_steps=5)
"""The tiny image policy's settings (one 16x16 camera, two decoder layers, hash text)."""


def tiny_vla_config(**overrides) -> VLAConfig:
    """:data:`TINY_VLA` with ``overrides``."""
    return VLAConfig(**{**TINY_VLA, **overrides})


def toy_embodiment(name: str = "toy3", slots: Sequence[int] = (0, 1, 2), lim: float = 2.0,
                   joint_prefix: str = "") -> Embodiment:
    """Joints ``{joint_prefix}j0, j1, ...`` in ``slots``, each within +-``lim``."""
    return Embodiment(name=name, joints=[
        JointSpec(name=f"{joint_prefix}j{i}", slot=s, lower=-lim, upper=lim)
        for i, s in enumerate(slots)])


def hash_embed(texts: Sequence[str]) -> np.ndarray:
    """The tiny policies' instruction embedding (hash encoder, :data:`TEXT_DIM` wide)."""
    return embed_instructions(list(texts), "hash", TEXT_DIM)


def toy_policy_dataset(roots: Sequence[str | Path], cameras: Sequence[str] = ("front",),
                       image_size: int = 16, **kw) -> PolicyDataset:
    """The training split of toy datasets (``write_toy_dataset``) in chunks of 4."""
    return PolicyDataset([Path(r) for r in roots], "train", 4, list(cameras), image_size, None,
                         hash_embed, **kw)


def save_untrained_policy(out: str | Path, seed: int = 0, **overrides) -> Path:
    """An untrained tiny image policy (:data:`TINY_VLA`, one ``front`` camera) saved to ``out``
    with unit statistics: a real checkpoint for nodes that load one (policy_node's configure
    imports torch and reads it), in a fraction of a second."""
    import torch

    from ate_ros.core.embodiment import UNIFIED_DIM
    from ate_ros.core.normalization import NormStats
    from ate_ros.core.steer.policies import VLAPolicy

    torch.manual_seed(seed)
    policy = VLAPolicy(tiny_vla_config(**overrides))
    unit = NormStats(mean=np.zeros(UNIFIED_DIM, np.float32),
                     std=np.full(UNIFIED_DIM, 0.1, np.float32),
                     min=np.full(UNIFIED_DIM, -1.0, np.float32),
                     max=np.ones(UNIFIED_DIM, np.float32))
    policy.set_norm_stats(unit, unit)
    return policy.save_pretrained(out)
