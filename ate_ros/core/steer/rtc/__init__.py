"""Real-time chunking (RTC): prefix-guided sampling and the inference-latency estimate.

``configuration_rtc`` is torch-free (node configs nest :class:`RTCConfig`); the processor is
imported on first use.
"""

from __future__ import annotations

import importlib

from ate_ros.core.deploy.latency import LatencyEstimate
from ate_ros.core.steer.rtc.configuration_rtc import (
    GUIDANCE_GRADIENTS,
    PREFIX_SCHEDULES,
    RTCConfig,
)

_MODELING = ("RTCProcessor", "flow_equivalent", "guidance_weight", "prefix_weights")

__all__ = ["GUIDANCE_GRADIENTS", "PREFIX_SCHEDULES", "LatencyEstimate", "RTCConfig",
           "RTCProcessor", "flow_equivalent", "guidance_weight", "prefix_weights"]


def __getattr__(name: str):
    if name in _MODELING:
        return getattr(importlib.import_module("ate_ros.core.steer.rtc.modeling_rtc"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
