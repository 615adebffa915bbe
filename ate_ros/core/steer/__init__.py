"""core/steer: ATE latent guidance, the compact VLA policy and its training loops."""

from ate_ros.core.steer.guidance import (
    GuidanceConfig,
    GuidanceStats,
    LatentGuidance,
    encoder_from_bundle,
    guidance_coefficient,
    latent_gradient,
    masked_mse,
)

__all__ = ["GuidanceConfig", "GuidanceStats", "LatentGuidance", "encoder_from_bundle",
           "guidance_coefficient", "latent_gradient", "masked_mse"]
