"""Real-time chunking: guided denoising toward the actions already committed to the robot.

The processor wraps a policy's denoising step, as LeRobot's ``RTCProcessor`` does: the policy
calls :meth:`RTCProcessor.guided_x0` (any head with an x0 prediction) or
:meth:`RTCProcessor.flow_velocity` (a flow head's velocity) once per step. Times follow the
paper: tau = 0 is pure noise, tau = 1 clean data (the openpi/LeRobot flow time is t = 1 - tau).

Shapes: B batch, H chunk length, D action width, P committed prefix length (P <= H).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ate_ros.core.steer.rtc.configuration_rtc import RTCConfig


def prefix_weights(schedule: str, delay: int, horizon: int, total: int) -> torch.Tensor:
    """(total,) weights of the committed prefix: 1 for the first ``delay`` points (frozen: they
    execute while the chunk is computed), the ``schedule`` decaying from 1 towards 0 between
    ``delay`` and ``horizon``, 0 from ``horizon`` on.

    ``c_i = (horizon - i) / (horizon - delay + 1)`` for ``delay <= i < horizon`` (paper eq. 5,
    with its H - s written as ``horizon``); 'exp' uses ``c_i (e^c_i - 1) / (e - 1)``.
    """
    horizon = max(min(int(horizon), int(total)), 0)
    delay = max(min(int(delay), horizon), 0)
    w = torch.zeros(int(total))
    w[:delay] = 1.0
    if schedule == "zeros":
        return w
    if schedule == "ones":
        w[:horizon] = 1.0
        return w
    i = torch.arange(delay, horizon, dtype=torch.float64)
    c = (horizon - i) / (horizon - delay + 1)
    if schedule == "exp":
        c = c * torch.expm1(c) / (math.e - 1)
    elif schedule != "linear":
        raise ValueError(f"unknown prefix schedule {schedule!r}")
    w[delay:horizon] = c.to(w.dtype)
    return w


def guidance_weight(tau: float, max_weight: float) -> float:
    """min(beta, (1 - tau) / tau * 1 / r_tau^2), r_tau^2 = (1 - tau)^2 / ((1 - tau)^2 + tau^2)
    (paper eq. 4); beta at tau = 0, 0 at tau = 1."""
    tau = float(tau)
    if tau <= 0.0:
        return float(max_weight)
    if tau >= 1.0:
        return 0.0
    r2 = (1 - tau) ** 2 / ((1 - tau) ** 2 + tau ** 2)
    return float(min(max_weight, (1 - tau) / tau / r2))


def _pad(prefix: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B or 1, P, D') -> like's (B, H, D), zero-padded (a shorter prefix weighs 0 past P)."""
    if prefix.ndim == 2:
        prefix = prefix.unsqueeze(0)
    B, H, D = like.shape
    out = torch.zeros(B, H, D, dtype=like.dtype, device=like.device)
    p, d = min(prefix.shape[1], H), min(prefix.shape[2], D)
    out[:, :p, :d] = prefix[:, :p, :d].to(like.dtype)
    return out


class RTCProcessor:
    """Prefix-guided denoising (the paper's Algorithm 1, guidance part)."""

    def __init__(self, config: RTCConfig | None = None) -> None:
        self.config = config or RTCConfig()

    def weights(self, delay: int, prefix_len: int, total: int,
                horizon: int | None = None) -> torch.Tensor:
        """(total,) prefix weights; the horizon is capped at the prefix length."""
        s = self.config.execution_horizon if horizon is None else int(horizon)
        return prefix_weights(self.config.prefix_attention_schedule, delay,
                              min(s, prefix_len), total)

    def gradient(self, head: str = "flow") -> str:
        """'vjp' or 'identity' for a ``head`` ('flow' or 'diffusion') under this config."""
        g = self.config.guidance_gradient
        if g != "auto":
            return g
        return "vjp" if head == "flow" else "identity"

    def correction(self, x: torch.Tensor, x0_fn: Callable[[torch.Tensor], torch.Tensor],
                   prefix: torch.Tensor, delay: int, horizon: int | None = None,
                   head: str = "flow") -> tuple[torch.Tensor, torch.Tensor]:
        """-> (x0_hat, g) with g = (dx0_hat/dx)^T [(prefix - x0_hat) * W] (B, H, D).

        Per sample: the vector-Jacobian product of a per-sample denoiser only couples a sample
        with itself, so a batch gives each sample the result it gets alone.
        """
        if x.ndim != 3:
            raise ValueError(f"x must be (B, H, D), got {tuple(x.shape)}")
        B, H, D = x.shape
        plen = prefix.shape[-2]
        w = self.weights(delay, plen, H, horizon).to(x.device, x.dtype).view(1, H, 1)
        target = _pad(prefix, x)
        if self.gradient(head) == "identity":
            x0 = x0_fn(x)
            return x0, (target - x0) * w
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = x0_fn(xg)
            err = ((target - x0) * w).detach()
            (g,) = torch.autograd.grad(x0, xg, err)
        return x0.detach(), g

    def guided_x0(self, x: torch.Tensor, x0_fn: Callable[[torch.Tensor], torch.Tensor],
                  prefix: torch.Tensor | None, delay: int, tau: float,
                  horizon: int | None = None, head: str = "flow") -> torch.Tensor:
        """The clean-chunk prediction after guidance, ``x0_hat + (1 - tau) w(tau) g``.

        ``x`` is the sample on the flow path ``tau * a + (1 - tau) * noise`` (other heads map
        their sample onto it, see :func:`flow_equivalent`); the flow velocity recomputed from the
        result is the paper's ``v + w(tau) g``. Without a prefix: ``x0_fn(x)``.
        """
        if prefix is None:
            return x0_fn(x)
        x0, g = self.correction(x, x0_fn, prefix, delay, horizon, head)
        k = (1.0 - float(tau)) * guidance_weight(tau, self.config.max_guidance_weight)
        return x0 + k * g

    def flow_velocity(self, x_t: torch.Tensor, v_fn: Callable[[torch.Tensor], torch.Tensor],
                      prefix: torch.Tensor | None, delay: int, time: float,
                      horizon: int | None = None) -> torch.Tensor:
        """Guided velocity of an openpi/LeRobot flow step (x_t = time*noise + (1-time)*a,
        v = noise - a, x0_hat = x_t - time * v): ``v - w(1 - time) g``. Same arguments as
        LeRobot's ``RTCProcessor.denoise_step`` (which takes ``x_t`` 2-D or 3-D)."""
        squeeze = x_t.ndim == 2
        x = x_t.unsqueeze(0) if squeeze else x_t
        if prefix is None:
            v = v_fn(x)
        else:
            def x0_fn(xx: torch.Tensor) -> torch.Tensor:
                return xx - time * v_fn(xx)

            x0, g = self.correction(x, x0_fn, prefix, delay, horizon)
            v = (x - x0) / time if time > 0 else v_fn(x)
            v = v - guidance_weight(1.0 - time, self.config.max_guidance_weight) * g
        return v.squeeze(0) if squeeze else v


def flow_equivalent(abar: float) -> tuple[float, float]:
    """A diffusion sample ``x = sqrt(abar) a + sqrt(1 - abar) eps`` divided by
    ``s = sqrt(abar) + sqrt(1 - abar)`` lies on the flow path at ``tau = sqrt(abar) / s``.
    Returns (s, tau): guidance runs on ``x / s`` at ``tau`` (x0-based RTC for DDIM)."""
    a, b = math.sqrt(max(abar, 0.0)), math.sqrt(max(1.0 - abar, 0.0))
    s = a + b
    return s, a / s
