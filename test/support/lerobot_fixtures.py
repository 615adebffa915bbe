"""Tiny LeRobot checkpoints for the graph and evaluation tests, built offline from a config.

The DiffusionPolicy is LeRobot's own class with a ResNet-18 from scratch (no pretrained
weights, nothing downloaded) and a two-level U-Net; it is saved untrained with LeRobot's
``save_pretrained`` next to its pre/post-processors, exactly the folder ``lerobot-train``
writes. Its normalisation statistics are the embodiment's joint limits (state and action
min/max), so the post-processor maps the policy's clipped [-1, 1] samples onto the limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ate_ros.core.embodiment import Embodiment
from ate_ros.core.lerobot_compat import require_lerobot

if TYPE_CHECKING:
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

STATE = "observation.state"
ACTION = "action"
IMAGES = "observation.images."


def tiny_diffusion_config(D: int, image: int = 16) -> DiffusionConfig:
    """A DiffusionPolicy small enough for CPU tests (resnet18 from scratch, 2-level U-Net)."""
    require_lerobot()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    return DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (D,)),
                        "observation.images.front": PolicyFeature(FeatureType.VISUAL,
                                                                  (3, image, image))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (D,))},
        horizon=8, n_action_steps=4, n_obs_steps=2, pretrained_backbone_weights=None,
        crop_shape=(14, 14), down_dims=(8, 16), kernel_size=3, n_groups=4,
        diffusion_step_embed_dim=8, spatial_softmax_num_keypoints=4, num_train_timesteps=20,
        num_inference_steps=4, device="cpu")


def tiny_diffusion_checkpoint(out: Path, embodiment: Embodiment, seed: int = 0,
                              n_action_steps: int = 4, horizon: int = 8) -> Path:
    """Write an untrained DiffusionPolicy checkpoint for ``embodiment`` to ``out``."""
    require_lerobot()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    D = embodiment.dof
    inputs = {STATE: PolicyFeature(FeatureType.STATE, (D,))}
    for cam in embodiment.cameras:
        inputs[IMAGES + cam.name] = PolicyFeature(FeatureType.VISUAL,
                                                  (3, cam.height, cam.width))
    cfg = DiffusionConfig(
        input_features=inputs, output_features={ACTION: PolicyFeature(FeatureType.ACTION, (D,))},
        horizon=horizon, n_action_steps=n_action_steps, n_obs_steps=2,
        pretrained_backbone_weights=None, crop_shape=None, down_dims=(8, 16), kernel_size=3,
        n_groups=4, diffusion_step_embed_dim=8, spatial_softmax_num_keypoints=4,
        num_train_timesteps=20, num_inference_steps=4, device="cpu")
    lo = torch.tensor(embodiment.lower, dtype=torch.float32)
    hi = torch.tensor(embodiment.upper, dtype=torch.float32)
    stats = {STATE: {"min": lo, "max": hi}, ACTION: {"min": lo, "max": hi}}
    for cam in embodiment.cameras:
        stats[IMAGES + cam.name] = {"mean": torch.full((3, 1, 1), 0.5),
                                    "std": torch.full((3, 1, 1), 0.25)}
    torch.manual_seed(seed)
    policy = DiffusionPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    out = Path(out)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def tiny_alignment(out: Path, pretrain: Path, adapt: Path) -> Path:
    """Trains a one-epoch MLP alignment between two toy datasets (chunk size 4, latent 4).

    Args:
        out: Alignment folder to write.
        pretrain: Toy pre-training dataset folder (with its ``embodiment.yaml``).
        adapt: Toy adaptation dataset folder (with its ``embodiment.yaml``).

    Returns:
        The alignment folder.
    """
    from ate_ros.core.align import AlignConfig, StageConfig, train_alignment

    stage = StageConfig(epochs=1, batch_size=16, warmup_steps=1, patience=0)
    return Path(train_alignment(AlignConfig(
        out=str(out), pretrain=[str(pretrain)], embodiment_pre=[str(pretrain / "embodiment.yaml")],
        adapt=str(adapt), embodiment_ada=str(adapt / "embodiment.yaml"), preset="mlp",
        chunk_size=4, vae_overrides={"latent_dim": 4, "mlp_hidden": 32}, stage1=stage,
        stage2=stage, control=False, plots=False, tensorboard=False, progress=False,
        device="cpu")))
