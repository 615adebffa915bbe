"""Noise schedules for the policy heads: DDPM/DDIM diffusion and flow matching (two conventions).

Everything works on tensors shaped (B, H, D) with per-sample noise levels (B,). Conventions:

- Diffusion: ``x_k = sqrt(abar_k) * x0 + sqrt(1 - abar_k) * eps`` with ``abar`` the cumulative
  product of ``1 - beta`` (``alphas_cumprod``); the model predicts ``eps`` or ``x0`` ("sample").
- Flow, openpi/LeRobot convention (``"openpi"``): ``x_t = t * noise + (1 - t) * a``, velocity
  target ``noise - a``; sampling integrates t from 1 (noise) to 0 (data).
- Flow, paper convention (``"paper"``): ``a_tau = tau * a + (1 - tau) * noise``, target
  ``a - noise``; sampling integrates tau from 0 (noise) to 1 (data).
"""

from __future__ import annotations

import math

import torch

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
FLOW_CONVENTIONS = ("openpi", "paper")
PREDICTION_TYPES = ("epsilon", "sample")


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) so it broadcasts against ``like``."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)).to(like.dtype)


def seeded_noise(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None,
                 device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    A CPU generator therefore gives the same numbers whether the model runs on CPU or GPU (the
    CUDA generator draws a different stream for the same seed), so a seed reproduces a chunk
    across machines up to floating-point differences; the copy is a few kB per chunk.
    """
    src = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=src, dtype=dtype).to(device)


class DiffusionSchedule:
    """Discrete DDPM noise schedule with DDPM and DDIM samplers over any strided sub-sequence."""

    def __init__(self, num_train_timesteps: int = 100, beta_schedule: str = "squaredcos_cap_v2",
                 beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
        T = num_train_timesteps
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        else:  # Nichol & Dhariwal cosine schedule, betas capped at 0.999
            def f(t):
                return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)],
                                 dtype=torch.float64)
        self.num_train_timesteps = T
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0).to(torch.float32)  # (T,)
        self._tables: dict[tuple, torch.Tensor] = {}  # ddim_table cache

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) integer timesteps -> (B,) alphas_cumprod on t's device."""
        return self.alphas_cumprod.to(t.device)[t]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _bcast(self.abar(t), x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def timesteps(self, num_steps: int) -> list[int]:
        """Descending timesteps for ``num_steps`` sampling steps (evenly spaced, ends at 0)."""
        if not 1 <= num_steps <= self.num_train_timesteps:
            raise ValueError(f"num_steps must be in [1, {self.num_train_timesteps}], got "
                             f"{num_steps}")
        ts = torch.linspace(self.num_train_timesteps - 1, 0, num_steps).round().long()
        return [int(t) for t in ts]

    @staticmethod
    def split(model_out: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor,
              prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output -> (x0_hat, eps_hat) at noise level ``abar`` (float or (B,))."""
        a = torch.as_tensor(abar, dtype=x_t.dtype, device=x_t.device)
        a = _bcast(a, x_t) if a.ndim else a
        if prediction_type == "epsilon":
            eps = model_out
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        elif prediction_type == "sample":
            x0 = model_out
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt().clamp_min(1e-8)
        else:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
        return x0, eps

    def step(self, x0: torch.Tensor, eps: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int,
             sampler: str = "ddim", generator: torch.Generator | None = None) -> torch.Tensor:
        """One reverse step t -> t_prev (t_prev = -1 means "to clean data")."""
        a_t = self.alphas_cumprod[t].item()
        a_p = self.alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
        if sampler == "ddim":  # deterministic (eta = 0)
            return math.sqrt(a_p) * x0 + math.sqrt(1 - a_p) * eps
        if sampler != "ddpm":
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        # Posterior q(x_prev | x_t, x0) for a strided step (alpha = a_t / a_p).
        alpha = a_t / a_p
        beta = 1 - alpha
        mean = (math.sqrt(a_p) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_p) /
                                                         (1 - a_t)) * x_t
        if t_prev < 0:
            return mean
        var = (1 - a_p) / (1 - a_t) * beta
        noise = seeded_noise(x_t.shape, generator, x_t.device, x_t.dtype)
        return mean + math.sqrt(max(var, 1e-20)) * noise

    def ddim_table(self, timesteps: list[int], dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> torch.Tensor:
        """(steps, 6) per-step coefficients of :meth:`ddim_update` for descending ``timesteps``.

        Columns: sqrt(abar_t) and sqrt(1 - abar_t) as :meth:`split` computes them (in
        ``dtype``), sqrt(abar_t) and sqrt(max(1 - abar_t, 1e-8)) of the eps recomputation and
        sqrt(abar_prev), sqrt(1 - abar_prev) of :meth:`step` (in double, like the Python-float
        arithmetic of the step-by-step sampler, then rounded to ``dtype``). Cached per
        ``(timesteps, dtype, device)``: read it, never modify it in place.
        """
        key = (tuple(timesteps), dtype, str(device))
        table = self._tables.get(key)
        if table is not None:
            return table
        a = self.alphas_cumprod[torch.tensor(timesteps, dtype=torch.long)].to(dtype)
        rows = []
        for i, t in enumerate(timesteps):
            a_t = self.alphas_cumprod[t].item()
            a_p = self.alphas_cumprod[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
            rows.append([math.sqrt(a_t), math.sqrt(max(1 - a_t, 1e-8)), math.sqrt(a_p),
                         math.sqrt(1 - a_p)])
        table = torch.cat([torch.stack([a.sqrt(), (1 - a).sqrt()], 1),
                           torch.tensor(rows, dtype=torch.float64).to(dtype)], 1).to(device)
        self._tables[key] = table
        return table

    @staticmethod
    def ddim_update(model_out: torch.Tensor, x_t: torch.Tensor, coef: torch.Tensor,
                    mask: torch.Tensor, prediction_type: str, clip_sample: float = 0.0
                    ) -> torch.Tensor:
        """One deterministic DDIM step on tensors only (traceable; no ``.item()``).

        ``coef``: one row (6,) of :meth:`ddim_table`; ``mask`` broadcasts against ``x_t``.
        Same arithmetic, in the same order, as :meth:`split`, the clip to
        ``[-clip_sample, clip_sample]`` (off when 0), the mask, the eps recomputation from the
        clipped x0 and :meth:`step` with ``sampler="ddim"``, then the mask again.
        """
        sa, s1, sa_e, s1_e, sa_p, s1_p = coef.unbind(-1)
        if prediction_type == "epsilon":
            x0 = (x_t - s1 * model_out) / sa
        elif prediction_type == "sample":
            x0 = model_out
        else:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
        if clip_sample > 0:
            x0 = x0.clamp(-clip_sample, clip_sample)
        x0 = x0 * mask
        eps = (x_t - sa_e * x0) / s1_e
        return (sa_p * x0 + s1_p * eps) * mask


class FlowSchedule:
    """Flow matching in either convention (see module docstring)."""

    def __init__(self, convention: str = "openpi", time_beta_alpha: float = 1.5,
                 min_level: float = 1e-3) -> None:
        if convention not in FLOW_CONVENTIONS:
            raise ValueError(f"flow convention must be one of {FLOW_CONVENTIONS}, got "
                             f"{convention!r}")
        self.convention = convention
        self.time_beta_alpha = time_beta_alpha
        self.min_level = min_level
        self._tables: dict[tuple, torch.Tensor] = {}  # euler_table cache

    def sample_level(self, batch: int, device, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """(B,) convention time. The *noise fraction* s ~ Beta(alpha, 1) (pi0 emphasises noisy
        levels), kept in [min_level, 1 - min_level]; openpi t = s, paper tau = 1 - s."""
        u = torch.rand(batch, generator=generator, device=device)
        s = u.pow(1.0 / self.time_beta_alpha)
        s = s * (1 - 2 * self.min_level) + self.min_level
        return s if self.convention == "openpi" else 1 - s

    def interpolate(self, x0: torch.Tensor, noise: torch.Tensor, level: torch.Tensor
                    ) -> torch.Tensor:
        t = _bcast(level, x0)
        if self.convention == "openpi":
            return t * noise + (1 - t) * x0
        return t * x0 + (1 - t) * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise - x0 if self.convention == "openpi" else x0 - noise

    def noise_fraction(self, level: torch.Tensor) -> torch.Tensor:
        """Convention time -> fraction of noise in [0, 1] (used as the network's time input)."""
        return level if self.convention == "openpi" else 1 - level

    def grid(self, num_steps: int) -> list[float]:
        """Convention times from pure noise to data, ``num_steps + 1`` points."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        s = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
        return [float(v) if self.convention == "openpi" else float(1 - v) for v in s]

    def x0_from_velocity(self, v: torch.Tensor, x: torch.Tensor, level: float) -> torch.Tensor:
        if self.convention == "openpi":
            return x - level * v
        return x + (1 - level) * v

    def velocity_from_x0(self, x0: torch.Tensor, x: torch.Tensor, level: float) -> torch.Tensor:
        if self.convention == "openpi":
            return (x - x0) / max(level, 1e-6)
        return (x0 - x) / max(1 - level, 1e-6)

    @staticmethod
    def euler(x: torch.Tensor, v: torch.Tensor, level: float, level_next: float) -> torch.Tensor:
        return x + (level_next - level) * v

    def euler_table(self, grid: list[float], dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """(steps, 1) Euler step sizes ``level_next - level`` of :meth:`grid` (computed in
        double, like :meth:`euler`, then rounded to ``dtype``) for :meth:`euler_update`.
        Cached per ``(grid, dtype, device)``: read it, never modify it in place."""
        key = (tuple(grid), dtype, str(device))
        table = self._tables.get(key)
        if table is None:
            dt = [[b - a] for a, b in zip(grid[:-1], grid[1:])]
            table = torch.tensor(dt, dtype=torch.float64).to(dtype).to(device)
            self._tables[key] = table
        return table

    @staticmethod
    def euler_update(v: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, mask: torch.Tensor
                     ) -> torch.Tensor:
        """:meth:`euler` then the mask, on tensors only; ``coef`` one row (1,) of
        :meth:`euler_table`."""
        (dt,) = coef.unbind(-1)
        return (x + dt * v) * mask
