"""Policies that the steer stage trains and the runtime calls (LeRobot-style config/modeling).

Names are imported on first use (module ``__getattr__``), so the torch-free
:mod:`.saved_policy` reader (the graph reads a policy's settings before loading it) does not load
torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_LAZY = {"VLAConfig": "configuration_vla", "ACTION": "modeling_vla", "OBS_IMAGES": "modeling_vla",
         "OBS_MASK": "modeling_vla", "OBS_STATE": "modeling_vla", "OBS_TEXT": "modeling_vla",
         "InferenceGuidance": "modeling_vla", "VLAPolicy": "modeling_vla"}

__all__ = ["ACTION", "OBS_IMAGES", "OBS_MASK", "OBS_STATE", "OBS_TEXT", "InferenceGuidance",
           "VLAConfig", "VLAPolicy", "load_policy"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_policy(path: str | Path, device: str = "cpu") -> VLAPolicy:
    """Load a saved policy folder (``model.safetensors`` + ``config.json``) in eval mode.

    The returned object satisfies ``ChunkPolicy`` and also has ``embodiment_names``,
    ``model_id`` and ``set_inference_guidance(bundle, scale)``.
    """
    from ate_ros.core.steer.policies.modeling_vla import VLAPolicy

    return VLAPolicy.from_pretrained(path, device=device)
