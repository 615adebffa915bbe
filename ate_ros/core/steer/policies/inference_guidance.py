"""Experimental inference-time latent steering of a policy's sampled chunks.

Shapes: B batch, H chunk length, D = UNIFIED_DIM joint slots, Z latent width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class InferenceGuidance:
    """Experimental inference-time latent steering (off unless set on the policy).

    At every denoising step the predicted clean chunk x0_hat is moved along the gradient of the
    log-density of its latent under the adaptation latent Gaussian N(mean, cov) (the stage-2
    aggregate posterior): ``x0 <- x0 + clamp(scale * grad)``; the gradient is taken w.r.t. x0_hat
    only (no backprop through the policy), so the cost is one encoder forward/backward per step.
    """

    encoder: object  # (B, H', D) joint units -> latent mean (B, Z) (or (mu, logvar))
    mean: torch.Tensor  # (Z,)
    precision: torch.Tensor  # (Z, Z)
    scale: float = 1.0
    clamp: float = 0.1
    horizon: int | None = None
    mask: torch.Tensor | None = None  # (D,) bool

    @classmethod
    def from_bundle(cls, bundle, scale: float = 1.0, clamp: float = 0.1) -> InferenceGuidance:
        from ate_ros.core.steer.guidance import encoder_from_bundle

        cov = torch.as_tensor(np.asarray(bundle.adapt_cov), dtype=torch.float32)
        return cls(encoder=encoder_from_bundle(bundle),
                   mean=torch.as_tensor(np.asarray(bundle.adapt_mean), dtype=torch.float32),
                   precision=torch.linalg.inv(cov + 1e-6 * torch.eye(cov.shape[0])),
                   scale=scale, clamp=clamp, horizon=int(bundle.chunk_size),
                   mask=torch.as_tensor(np.asarray(bundle.mask), dtype=torch.bool))

    def shift(self, x0_joint: torch.Tensor) -> torch.Tensor:
        """(B, H, D) joint-unit chunk -> (B, H, D) shift of it, in joint units."""
        h = x0_joint.shape[1] if self.horizon is None else min(self.horizon, x0_joint.shape[1])
        with torch.enable_grad():
            x = x0_joint[:, :h].detach().float().requires_grad_(True)
            out = self.encoder(x)
            mu = (out[0] if isinstance(out, (tuple, list)) else out).reshape(x.shape[0], -1)
            d = mu - self.mean.to(mu.device)
            logp = -0.5 * (d @ self.precision.to(mu.device) * d).sum(-1)  # (B,)
            (g,) = torch.autograd.grad(logp.sum(), x)
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        if self.mask is not None:
            g = g * self.mask.to(g.device, g.dtype)
        s = (self.scale * g).clamp(-self.clamp, self.clamp)
        out = torch.zeros_like(x0_joint)
        out[:, :h] = s
        return out
