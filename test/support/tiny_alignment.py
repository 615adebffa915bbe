"""Alignment bundles with random weights and statistics (what guidance needs, no training)."""

from __future__ import annotations

import numpy as np
import torch

from ate_ros.core.align import ActionVAE, AlignmentBundle, GaussianLatent, StageModel, VAEConfig
from ate_ros.core.align.synthetic import toy_arm
from ate_ros.core.normalization import NormStats


def random_bundle(chunk_size: int, preset: str = "small", dof: int = 5,
                  seed: int = 0) -> AlignmentBundle:
    """Stage 1 and 2 of ``preset`` with random weights over a ``dof``-joint toy arm; the
    normalisation is random too (mean/std mode), so encoding exercises it."""
    rng = np.random.default_rng(seed)
    stages = []
    for s in (seed, seed + 1):
        torch.manual_seed(s)
        vae = ActionVAE(VAEConfig.preset(preset, chunk_size=chunk_size))
        with torch.no_grad():  # off the default init (LayerNorms at 1/0 look alike)
            for p in vae.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        norm = NormStats(mean=rng.normal(size=128), std=rng.uniform(0.5, 2.0, 128),
                         min=-np.ones(128), max=np.ones(128))
        stages.append(StageModel(vae, norm))
    Z = stages[0].config.latent_dim
    arm = toy_arm(f"arm{dof}", dof)
    return AlignmentBundle(stages[0], stages[1], GaussianLatent.standard(Z),
                           GaussianLatent.standard(Z), arm, [arm], {}, torch.device("cpu"))
