"""Configuration of real-time chunking (RTC: Black, Galliker, Levine 2025, arXiv 2506.07339)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.config_fields import validate_fields

PREFIX_SCHEDULES = ("exp", "linear", "ones", "zeros")
GUIDANCE_GRADIENTS = ("auto", "vjp", "identity")


@dataclass
class RTCConfig:
    """Guided denoising toward the committed prefix of the previous chunk.

    The names follow LeRobot's ``RTCConfig`` (``prefix_attention_schedule``,
    ``max_guidance_weight``, ``execution_horizon``) so settings carry over.
    """

    prefix_attention_schedule: str = field(default="exp", metadata={
        "help": "Weights of the previous chunk's points beyond the frozen first d: 'exp' (the "
                "paper's c*(e^c-1)/(e-1)), 'linear' (c), 'ones' (1 up to the execution "
                "horizon) or 'zeros' (only the first d, hard inpainting)",
        "choices": PREFIX_SCHEDULES})
    max_guidance_weight: float = field(default=5.0, metadata={
        "help": "beta: the guidance weight min(beta, (1-tau)/tau / r_tau^2) is clipped here "
                "(the paper's 5; LeRobot's default is 10)",
        "min": 1e-6, "max": 1e6})
    execution_horizon: int = field(default=10, metadata={
        "help": "s: chunk points (from the start) the soft prefix weights reach; capped at the "
                "length of the committed prefix", "min": 0, "max": 100000})
    guidance_gradient: str = field(default="auto", metadata={
        "help": "'vjp': the paper's vector-Jacobian product through the denoiser (one "
                "backward pass per step); 'identity': the Jacobian taken as identity, what "
                "LeRobot 0.4's RTCProcessor computes (no backward pass); 'auto': vjp for a "
                "flow head, identity for a diffusion head (the x0 of an epsilon prediction "
                "has a Jacobian growing as 1/sqrt(abar), which at the first DDIM steps makes "
                "the product explode)",
        "choices": GUIDANCE_GRADIENTS})

    def __post_init__(self) -> None:
        validate_fields(self)
