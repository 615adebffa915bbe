"""ATE latent guidance ("steer"): plug-and-play for any score-based policy.

The frozen stage-2 encoder ``E`` of the alignment VAE defines a classifier
``p(y | a_k) ~ exp(-||E(a_k) - E(a_0)||^2)`` between the noisy chunk ``a_k`` and its clean
target ``a_0``. Its gradient ``g = grad_{a_k} -||E(a_k) - E(a_0)||^2`` shifts the policy's
regression target. With ``c`` the parameterisation's factor (docs/method.md), the guided loss is
``||pred + lambda * clamp(c * g) - target||^2``:

======================  ============================  ================================
parameterisation        ``level`` argument            ``c`` (multiplies lambda*g on pred)
======================  ============================  ================================
``"epsilon"``           ``abar_k``                    ``-sqrt(1 - abar_k)``
``"sample"`` (x0, RDT)  ``abar_k``                    ``(1 - abar_k) / sqrt(abar_k)``
``"flow_paper"``        ``tau`` (a = tau*a0+(1-tau)e)  ``(1 - tau) / tau``
``"flow_openpi"``       ``t`` (x = t*e + (1-t)*a0)     ``-t / (1 - t)``
======================  ============================  ================================

so the guided target is ``target - lambda * clamp(c * g)``. Compared with the reference code:

- ``g`` is per sample: the latent distance is averaged over latent dims of *each* sample
  (``latent_reduction="mean"``) and summed over the batch, so a sample's ``g`` is the same alone
  or in a batch of any size (the reference divided by batch size too);
- the clamp defaults to ``"norm"``: the per-sample RMS of ``c * g`` over the masked slots is
  capped at ``clamp`` keeping its direction (the reference's element-wise clamp, kept as
  ``"element"``, turns the term into a +-clamp*lambda sign pattern at high noise);
- ``g`` uses the encoder mean (no shared reparameterisation noise), is computed with
  ``torch.autograd.grad`` on a detached copy of ``a_k`` (no graph through the policy, nothing
  accumulated in the VAE), without anomaly mode, in float32 outside autocast;
- a sample whose ``g`` is NaN/inf gets no guidance and is counted in the returned stats;
- ``enabled=False`` returns the very same target tensor, so the loss is bit-identical to the
  unguided loss (and no random numbers are drawn either way).

Sign (``direction``). The formulas above are the paper's, and the reference code applies them
verbatim (``y = -mse(z_t, z_0)``, ``pred + lambda * clamp(c * grad y)``). Read through Tweedie's
formula, every parameterisation then moves the *clean* target ``a_0`` by ``-k * g`` (``k > 0``),
i.e. down ``grad log p(y | a_k)``, towards the noisy chunk; textbook classifier guidance
(Dhariwal & Nichol) would move it by ``+k * g``. The two agree if the paper's ``g`` is read as the
gradient of the latent *distance*. ``direction="classifier"`` (default) is that textbook sign;
``"paper"`` keeps the published one. ``benchmarks/bench_adaptation.py`` measures both: with the
published sign success fell below direct fine-tuning, increasingly with lambda, and with the
classifier sign it rose above it (``docs/benchmarks.md``), so the default follows the
measurement and the textbook, not the paper's text.

The policy usually works on normalised chunks while the VAE takes joint units: pass the policy's
(differentiable) un-normalisation as ``to_encoder``.

Example, wrapping LeRobot's ``DiffusionModel.compute_loss`` (epsilon prediction)::

    guide = LatentGuidance(lambda x: bundle.encode(x, stage=2)[0], "epsilon",
                           GuidanceConfig(scale=2.0), mask=bundle.mask,
                           to_encoder=lambda x: unnormalize_action(x))
    noisy = scheduler.add_noise(trajectory, eps, timesteps)
    pred = self.unet(noisy, timesteps, global_cond=global_cond)
    abar = scheduler.alphas_cumprod.to(noisy.device)[timesteps]
    target, stats = guide.guided_target(eps, noisy, trajectory, abar)
    loss = F.mse_loss(pred, target)

and openpi/LeRobot pi0 (``x_t = time * noise + (1 - time) * actions``)::

    guide = LatentGuidance(encoder, "flow_openpi", GuidanceConfig(), mask=bundle.mask,
                           to_encoder=unnormalize_action)
    u_t, stats = guide.guided_target(noise - actions, x_t, actions, time)
    loss = F.mse_loss(u_t, v_t, reduction="none")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ate_ros.core.config_fields import validate_fields

logger = logging.getLogger(__name__)

PARAMETERIZATIONS = ("epsilon", "sample", "flow_paper", "flow_openpi")
CLAMP_MODES = ("norm", "element", "none")
LATENT_REDUCTIONS = ("mean", "sum")
DIRECTIONS = ("paper", "classifier")

EncoderFn = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, ...]"]
"""(B, H, D) chunk in encoder units -> latent mean (B, Z) (or a tuple whose first item is it)."""


@dataclass
class GuidanceConfig:
    """Settings of training-time latent guidance."""

    enabled: bool = field(default=True, metadata={
        "help": "apply ATE guidance; False gives exactly the plain loss (ablation baseline)"})
    scale: float = field(default=2.0, metadata={
        "help": "lambda, the guidance strength (paper sweep: 1-3 help, 2 preferred)",
        "flag": "--lambda", "min": 0.0})
    clamp: float = field(default=0.1, metadata={
        "help": "bound on the scaled gradient c*g before lambda (reference: 0.1); <=0 disables"})
    clamp_mode: str = field(default="norm", metadata={
        "choices": CLAMP_MODES,
        "help": "'norm': cap the per-sample RMS of c*g keeping its direction; 'element': "
                "element-wise clamp as the reference code; 'none'"})
    latent_reduction: str = field(default="mean", metadata={
        "help": "per-sample latent distance: 'mean' over latent dims (reference scale at batch "
                "size 1) or 'sum' (the paper's squared norm)", "choices": LATENT_REDUCTIONS})
    min_denominator: float = field(default=1e-4, metadata={
        "help": "floor on the denominators of c (tau, 1 - t, sqrt(abar)) so c stays finite",
        "min": 0.0, "min_exclusive": True})
    direction: str = field(default="classifier", metadata={
        "choices": DIRECTIONS,
        "help": "'classifier' (default): textbook classifier guidance, the clean target moves "
                "up grad log p(y|a_k); 'paper': the published formulas (and reference code) "
                "verbatim, the opposite sign, which lowered success in bench_adaptation; see "
                "the docstring of ate_ros/core/steer/guidance.py"})

    encoder_stage: int = field(default=2, metadata={
        "help": "encoder the latent gradient goes through: 2, the aligned stage-2 encoder (ATE); "
                "1, the stage-1 encoder applied to the new robot's chunks (ablation: steer "
                "without align)", "choices": [1, 2]})

    def __post_init__(self) -> None:
        validate_fields(self)
        if not np.isfinite(self.scale):
            raise ValueError(f"guidance scale (lambda) must be finite, got {self.scale}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GuidanceStats:
    """What one guided batch did (for logging)."""

    applied: int = 0
    skipped_nonfinite: int = 0
    grad_rms: float = 0.0
    term_rms: float = 0.0
    clamped_fraction: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _latent_mean(out) -> torch.Tensor:
    mu = out[0] if isinstance(out, (tuple, list)) else out
    return mu.reshape(mu.shape[0], -1)


def guidance_coefficient(parameterization: str, level: torch.Tensor,
                         min_denominator: float = 1e-4) -> torch.Tensor:
    """(B,) factor ``c``: the guided loss is ``||pred + lambda*clamp(c*g) - target||^2``."""
    lv = level.to(torch.float32)
    if parameterization == "epsilon":
        return -(1 - lv).clamp_min(0).sqrt()
    if parameterization == "sample":
        return (1 - lv) / lv.sqrt().clamp_min(min_denominator)
    if parameterization == "flow_paper":
        return (1 - lv) / lv.clamp_min(min_denominator)
    if parameterization == "flow_openpi":
        return -lv / (1 - lv).clamp_min(min_denominator)
    raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                     f"{parameterization!r}")


def _expand_mask(mask, like: torch.Tensor) -> torch.Tensor | None:
    """(D,), (B, D) or (B, H, D) mask -> float tensor broadcastable to ``like`` (B, H, D)."""
    if mask is None:
        return None
    m = torch.as_tensor(mask, device=like.device)
    m = m.to(like.dtype)
    if m.ndim == 1:
        m = m.view(1, 1, -1)
    elif m.ndim == 2:
        m = m.unsqueeze(1)
    return m


def latent_gradient(encoder: EncoderFn, noisy: torch.Tensor, clean: torch.Tensor,
                    to_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    latent_reduction: str = "mean") -> torch.Tensor:
    """Per-sample ``g = grad_{noisy} -d(E(noisy), E(clean))`` with ``d`` the latent squared
    distance of each sample (mean or sum over latent dims). Returns (B, H, D) float32, detached.

    The batch loss is a *sum* of per-sample distances, so each sample's gradient is independent
    of the batch it sits in.
    """
    conv = to_encoder if to_encoder is not None else (lambda x: x)
    dev = noisy.device.type
    with torch.enable_grad(), torch.autocast(device_type=dev, enabled=False):
        x = noisy.detach().to(torch.float32).requires_grad_(True)
        mu = _latent_mean(encoder(conv(x))).float()
        with torch.no_grad():
            mu0 = _latent_mean(encoder(conv(clean.detach().to(torch.float32)))).float()
        d = (mu - mu0).pow(2)
        per_sample = d.mean(-1) if latent_reduction == "mean" else d.sum(-1)
        (g,) = torch.autograd.grad(-per_sample.sum(), x)
    return g.detach()


class LatentGuidance:
    """Guided targets for one parameterisation, a frozen encoder and an embodiment mask.

    Args:
        encoder: frozen stage-2 encoder, (B, H', D) chunk in encoder units -> latent mean.
        parameterization: one of ``PARAMETERIZATIONS``.
        config: :class:`GuidanceConfig`.
        mask: (D,) or (B, D) bool, the embodiment's used slots; g is zeroed elsewhere.
        to_encoder: differentiable map from the policy's chunk space to encoder units
            (the policy's action un-normalisation).
        horizon: chunk length the encoder takes; longer policy chunks are guided on their
            first ``horizon`` points only (the rest get no guidance). ``None``: whole chunk.
    """

    def __init__(self, encoder: EncoderFn, parameterization: str,
                 config: GuidanceConfig | None = None, mask=None,
                 to_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 horizon: int | None = None) -> None:
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                             f"{parameterization!r}")
        self.encoder = encoder
        self.parameterization = parameterization
        self.config = config or GuidanceConfig()
        self.mask = None if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        self.to_encoder = to_encoder
        self.horizon = horizon
        self.total_skipped = 0
        self._mask_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor | None] = {}

    @property
    def enabled(self) -> bool:
        return self.config.enabled and self.config.scale > 0

    def gradient(self, noisy: torch.Tensor, clean: torch.Tensor,
                 offset: torch.Tensor | None = None) -> torch.Tensor:
        """Masked per-sample g, (B, H, D); zeros past ``horizon``. ``offset`` (B, 1, D) is added
        after ``to_encoder`` (policies that predict actions relative to the joint state: the
        encoder sees absolute chunks)."""
        H = noisy.shape[1]
        h = H if self.horizon is None else self.horizon
        if h > H:
            raise ValueError(f"encoder horizon {h} exceeds the chunk length {H}")
        conv = self.to_encoder
        if offset is not None:
            base = self.to_encoder or (lambda x: x)

            def conv(x: torch.Tensor) -> torch.Tensor:
                return base(x) + offset.to(x.dtype)
        g = latent_gradient(self.encoder, noisy[:, :h], clean[:, :h], conv,
                            self.config.latent_reduction)
        if h < H:
            g = torch.cat([g, g.new_zeros((g.shape[0], H - h) + tuple(g.shape[2:]))], 1)
        m = self._mask_for(g)
        return g * m if m is not None else g

    def guidance_term(self, noisy: torch.Tensor, clean: torch.Tensor, level: torch.Tensor,
                      offset: torch.Tensor | None = None) -> tuple[torch.Tensor, GuidanceStats]:
        """``lambda * clamp(c * g)`` (B, H, D) with non-finite samples zeroed, and stats."""
        cfg = self.config
        g = self.gradient(noisy, clean, offset)
        B = g.shape[0]
        c = guidance_coefficient(self.parameterization, level.reshape(B).to(g.device),
                                 cfg.min_denominator).view(B, 1, 1)
        scaled = c * g
        # A sample gets no guidance where g or c * g has a NaN/inf: c * g is non-finite then,
        # and x * 0 sums to exactly 0 over finite x only (one cheap pass instead of isfinite).
        ok = (scaled * 0).reshape(B, -1).sum(1) == 0  # (B,)
        scaled = torch.where(ok.view(B, 1, 1), scaled, 0.0)
        n_used = self._used_count(g)  # (B,) or (1,), >= 1
        rms = (scaled.pow(2).reshape(B, -1).sum(1) / n_used).sqrt()  # (B,)
        sign = -1.0 if cfg.direction == "classifier" else 1.0
        clamped = torch.zeros(B, dtype=torch.bool, device=g.device)
        if cfg.clamp > 0 and cfg.clamp_mode == "element":
            clamped = (scaled.abs() > cfg.clamp).reshape(B, -1).any(1)
            term = scaled.clamp(-cfg.clamp, cfg.clamp) * (sign * cfg.scale)
            term_rms = (term.pow(2).reshape(B, -1).sum(1) / n_used).sqrt()
        else:
            factor = torch.ones_like(rms)
            if cfg.clamp > 0 and cfg.clamp_mode == "norm":
                clamped = rms > cfg.clamp
                factor = torch.where(clamped, cfg.clamp / rms.clamp_min(1e-12), factor)
            # scale * (factor * scaled) with the (B,) factors folded first: one full-size mul
            term = scaled * (factor * (sign * cfg.scale)).view(B, 1, 1)
            term_rms = rms * factor * cfg.scale
        g_rms = (torch.where(ok.view(B, 1, 1), g, 0.0).pow(2).reshape(B, -1).sum(1)
                 / n_used).sqrt()
        return term, self._batch_stats(ok, g_rms, term_rms, clamped)

    def _batch_stats(self, ok: torch.Tensor, g_rms: torch.Tensor, term_rms: torch.Tensor,
                     clamped: torch.Tensor) -> GuidanceStats:
        """Means over the guided samples (``ok``) of the (B,) per-sample figures; counts the
        skipped ones into ``total_skipped``."""
        B = ok.shape[0]
        okf = ok.to(torch.float32)
        # One device->host copy for all statistics: on a GPU every separate read is a sync that
        # stalls the launch queue of the training step.
        applied, g_sum, t_sum, c_sum = torch.stack([
            okf.sum(), (g_rms.float() * okf).sum(), (term_rms.float() * okf).sum(),
            (clamped.to(torch.float32) * okf).sum()]).tolist()
        applied = int(applied)
        skipped = B - applied
        self.total_skipped += skipped
        if skipped:
            logger.debug("guidance skipped for %d/%d samples (non-finite gradient)", skipped, B)
        n_ok = max(1, applied)
        return GuidanceStats(applied=applied, skipped_nonfinite=skipped, grad_rms=g_sum / n_ok,
                             term_rms=t_sum / n_ok, clamped_fraction=c_sum / n_ok)

    def _mask_for(self, like: torch.Tensor) -> torch.Tensor | None:
        """The embodiment mask as a float tensor broadcastable to ``like``, converted once per
        device and dtype (not on every step)."""
        if self.mask is None:
            return None
        key = (like.device, like.dtype)
        if key not in self._mask_cache:
            self._mask_cache[key] = _expand_mask(self.mask, like)
        return self._mask_cache[key]

    def _used_count(self, g: torch.Tensor) -> torch.Tensor:
        """(B,) or (1,) masked elements per sample of a (B, H, D) tensor, at least 1."""
        m = self._mask_for(g)
        if m is None:
            return torch.full((1,), float(g[0].numel()), device=g.device)
        return (m.sum((1, 2)) * g.shape[1]).clamp_min(1)

    def guided_target(self, target: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
                      level: torch.Tensor, offset: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, GuidanceStats]:
        """The regression target with guidance: ``target - lambda * clamp(c * g)``.

        Args:
            target: the plain target (eps, a0, or the flow velocity), (B, H, D).
            noisy: the noisy chunk the policy sees, a_k / x_t, (B, H, D).
            clean: the ground-truth clean chunk a_0 (same space as ``noisy``).
            level: (B,) ``abar_k`` for diffusion, ``tau`` / ``t`` for flow (see table above).
            offset: (B, 1, D) added to ``to_encoder``'s output (see :meth:`gradient`).
        With guidance disabled, returns ``target`` itself (bit-identical plain loss).
        """
        if not self.enabled:
            return target, GuidanceStats()
        term, stats = self.guidance_term(noisy, clean, level, offset)
        return target - term.to(target.dtype), stats

    def loss(self, pred: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor,
             clean: torch.Tensor, level: torch.Tensor, loss_mask=None
             ) -> tuple[torch.Tensor, GuidanceStats]:
        """Masked MSE between ``pred`` and the guided target (see :func:`masked_mse`)."""
        tgt, stats = self.guided_target(target, noisy, clean, level)
        return masked_mse(pred, tgt, loss_mask if loss_mask is not None else self.mask), stats


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask=None) -> torch.Tensor:
    """Mean squared error over the masked slots: per sample mean over its used elements, then
    the mean over the batch (so embodiments with few joints weigh as much as ones with many)."""
    err = (pred - target).pow(2)
    B = err.shape[0]
    m = _expand_mask(mask, err)
    if m is None:
        return err.reshape(B, -1).mean(1).mean()
    m = m.expand_as(err)
    per = (err * m).reshape(B, -1).sum(1) / m.reshape(B, -1).sum(1).clamp_min(1)
    return per.mean()


def encoder_from_bundle(bundle, stage: int = 2) -> EncoderFn:
    """The latent-mean encoder of an alignment bundle (``ate_ros.core.align``)."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        return bundle.encode_mean(x, stage=stage)

    return encode
