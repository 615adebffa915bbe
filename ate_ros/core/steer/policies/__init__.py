"""Policies that the steer stage trains and the runtime calls (LeRobot-style config/modeling)."""

from __future__ import annotations

from pathlib import Path

from ate_ros.core.steer.policies.configuration_vla import VLAConfig
from ate_ros.core.steer.policies.modeling_vla import (
    ACTION,
    OBS_IMAGES,
    OBS_MASK,
    OBS_STATE,
    OBS_TEXT,
    InferenceGuidance,
    VLAPolicy,
)

__all__ = ["ACTION", "OBS_IMAGES", "OBS_MASK", "OBS_STATE", "OBS_TEXT", "InferenceGuidance",
           "VLAConfig", "VLAPolicy", "load_policy"]


def load_policy(path: str | Path, device: str = "cpu") -> VLAPolicy:
    """Load a saved policy folder (``model.safetensors`` + ``config.json``) in eval mode.

    The returned object satisfies ``ChunkPolicy`` and also has ``embodiment_names``,
    ``model_id`` and ``set_inference_guidance(bundle, scale)``.
    """
    return VLAPolicy.from_pretrained(path, device=device)
