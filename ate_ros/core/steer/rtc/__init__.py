"""Real-time chunking (RTC): prefix-guided sampling and the inference-latency estimate."""

from ate_ros.core.steer.rtc.configuration_rtc import (
    GUIDANCE_GRADIENTS,
    PREFIX_SCHEDULES,
    RTCConfig,
)
from ate_ros.core.steer.rtc.latency import LatencyEstimate
from ate_ros.core.steer.rtc.modeling_rtc import (
    RTCProcessor,
    flow_equivalent,
    guidance_weight,
    prefix_weights,
)

__all__ = ["GUIDANCE_GRADIENTS", "PREFIX_SCHEDULES", "LatencyEstimate", "RTCConfig",
           "RTCProcessor", "flow_equivalent", "guidance_weight", "prefix_weights"]
