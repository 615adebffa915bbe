"""The latent guidance as it was before the speed work of #31 (commit 0f015ca), kept verbatim as
the reference that the faster ``LatentGuidance`` must reproduce: the full VAE ``encode`` (mu and
logvar) behind ``NormStats.normalize``, two finiteness passes, the mask converted on each call."""

from __future__ import annotations

import torch

from ate_ros.core.steer.guidance import (
    GuidanceStats,
    LatentGuidance,
    _expand_mask,
    guidance_coefficient,
)


def previous_bundle_encoder(bundle, stage: int = 2):
    """The encoder ``encoder_from_bundle`` returned: ``bundle.encode(x, stage)[0]`` as it was."""
    sm = bundle.stage1 if stage == 1 else bundle.stage2
    mask = torch.as_tensor(bundle.mask)

    def encode(x: torch.Tensor) -> torch.Tensor:
        xn = sm.norm.normalize(x.to(torch.float32))
        return sm.model.encode(xn, mask.expand(xn.shape[0], -1))[0]

    return encode


class PreviousGuidance(LatentGuidance):
    """``LatentGuidance`` with the mask handling and the term of commit 0f015ca (its
    ``gradient`` is unchanged since)."""

    def _mask_for(self, like: torch.Tensor) -> torch.Tensor | None:
        return _expand_mask(self.mask, like)  # converted on every call, as it was

    def guidance_term(self, noisy: torch.Tensor, clean: torch.Tensor, level: torch.Tensor,
                      offset: torch.Tensor | None = None) -> tuple[torch.Tensor, GuidanceStats]:
        """``lambda * clamp(c * g)`` (B, H, D) with non-finite samples zeroed, and stats."""
        cfg = self.config
        g = self.gradient(noisy, clean, offset)
        B = g.shape[0]
        flat = g.reshape(B, -1)
        finite = torch.isfinite(flat).all(1)  # (B,)
        g = torch.where(finite.view(B, 1, 1), g, torch.zeros_like(g))
        c = guidance_coefficient(self.parameterization, level.reshape(B).to(g.device),
                                 cfg.min_denominator).view(B, 1, 1)
        scaled = c * g
        finite_c = torch.isfinite(scaled.reshape(B, -1)).all(1)
        scaled = torch.where(finite_c.view(B, 1, 1), scaled, torch.zeros_like(scaled))
        ok = finite & finite_c
        m = _expand_mask(self.mask, scaled)
        n_used = (m.expand_as(scaled).reshape(B, -1).sum(1) if m is not None
                  else torch.full((B,), float(scaled[0].numel()), device=g.device))
        rms = (scaled.pow(2).reshape(B, -1).sum(1) / n_used.clamp_min(1)).sqrt()  # (B,)
        clamped = torch.zeros(B, dtype=torch.bool, device=g.device)
        if cfg.clamp > 0 and cfg.clamp_mode == "norm":
            clamped = rms > cfg.clamp
            factor = torch.where(clamped, cfg.clamp / rms.clamp_min(1e-12), torch.ones_like(rms))
            scaled = scaled * factor.view(B, 1, 1)
        elif cfg.clamp > 0 and cfg.clamp_mode == "element":
            clamped = (scaled.abs() > cfg.clamp).reshape(B, -1).any(1)
            scaled = scaled.clamp(-cfg.clamp, cfg.clamp)
        term = cfg.scale * scaled
        if cfg.direction == "classifier":
            term = -term
        term_rms = (term.pow(2).reshape(B, -1).sum(1) / n_used.clamp_min(1)).sqrt()
        g_rms = (g.pow(2).reshape(B, -1).sum(1) / n_used.clamp_min(1)).sqrt()
        return term, self._batch_stats(ok, g_rms, term_rms, clamped)
