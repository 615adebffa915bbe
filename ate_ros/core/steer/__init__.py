"""core/steer: ATE latent guidance, the compact VLA policy and its training loops.

Names are imported on first use (module ``__getattr__``), so a torch-free submodule such as
``core.steer.rtc.configuration_rtc`` (read by node configs) does not load torch.
"""

from __future__ import annotations

import importlib

__all__ = ["GuidanceConfig", "GuidanceStats", "LatentGuidance", "encoder_from_bundle",
           "guidance_coefficient", "latent_gradient", "masked_mse"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("ate_ros.core.steer.guidance"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
