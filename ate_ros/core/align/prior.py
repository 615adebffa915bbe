"""Gaussian summaries of latent distributions (q_pre, and the adaptation distribution).

The paper summarises the pre-training latent distribution q_phi(z) by the moments of the
*aggregate posterior* over all pre-training chunks x_i::

    mean = E_i[mu_i]
    cov  = Cov_i(mu_i) + E_i[diag sigma_i^2]      (law of total variance)

(diagonal by default, full covariance by option). The reference code instead averages mu and
sigma separately, so its spread is mean(sigma) rather than Var(mu) + E[sigma^2], and it first
adds slight DDPM noise to the chunks; we follow the paper and use neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

COV_RIDGE = 1e-6  # added to the diagonal so Cholesky never fails on a degenerate latent


@dataclass
class GaussianLatent:
    """N(mean, cov) over the Z-dim latent. ``cov`` is always stored as a full (Z, Z) matrix."""

    mean: torch.Tensor
    cov: torch.Tensor

    def __post_init__(self) -> None:
        Z = self.mean.shape[-1]
        if self.mean.ndim != 1 or self.cov.shape != (Z, Z):
            raise ValueError(f"GaussianLatent needs mean (Z,) and cov (Z, Z); got "
                             f"{tuple(self.mean.shape)} and {tuple(self.cov.shape)}")
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.cov).all()):
            raise ValueError("GaussianLatent mean/cov contain NaN or inf")
        self._chol: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def is_diagonal(self) -> bool:
        off = self.cov - torch.diag(torch.diagonal(self.cov))
        return bool((off == 0).all())

    def to(self, device: torch.device | str) -> GaussianLatent:
        return GaussianLatent(self.mean.to(device), self.cov.to(device))

    @property
    def chol(self) -> torch.Tensor:
        if self._chol is None or self._chol.device != self.cov.device:
            eye = torch.eye(self.dim, dtype=torch.float64, device=self.cov.device)
            self._chol = torch.linalg.cholesky(self.cov.to(torch.float64) + COV_RIDGE * eye)
        return self._chol

    def cov_arg(self) -> torch.Tensor:
        """(Z,) variances when diagonal (cheaper KL), else the (Z, Z) matrix."""
        return torch.diagonal(self.cov) if self.is_diagonal else self.cov

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, Z) samples, float32, on ``mean``'s device."""
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        eps = eps.to(self.mean.device)
        return (self.mean.to(torch.float64) + eps @ self.chol.T).to(torch.float32)

    def mahalanobis_sq(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B,) squared Mahalanobis distance to this Gaussian."""
        diff = (z.to(torch.float64) - self.mean.to(torch.float64)).T
        y = torch.linalg.solve_triangular(self.chol, diff, upper=False)
        return y.pow(2).sum(0).to(z.dtype)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean.float(), f"{prefix}.cov": self.cov.float()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> GaussianLatent:
        try:
            return cls(tensors[f"{prefix}.mean"], tensors[f"{prefix}.cov"])
        except KeyError as exc:
            raise ValueError(f"tensors {prefix}.mean / {prefix}.cov missing") from exc

    @classmethod
    def standard(cls, dim: int) -> GaussianLatent:
        return cls(torch.zeros(dim), torch.eye(dim))


class AggregatePosterior:
    """Running (float64) moments of encoder outputs: feed (mu, logvar) batches, then
    :meth:`result`."""

    def __init__(self, dim: int, full: bool = False) -> None:
        self.full, self.n = full, 0
        self.s_mu = torch.zeros(dim, dtype=torch.float64)
        self.s_mumu = torch.zeros((dim, dim) if full else (dim,), dtype=torch.float64)
        self.s_var = torch.zeros(dim, dtype=torch.float64)

    def update(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        mu = mu.detach().to("cpu", torch.float64)
        var = logvar.detach().to("cpu", torch.float64).exp()
        self.n += mu.shape[0]
        self.s_mu += mu.sum(0)
        self.s_mumu += mu.T @ mu if self.full else mu.pow(2).sum(0)
        self.s_var += var.sum(0)

    def result(self) -> GaussianLatent:
        if self.n == 0:
            raise ValueError("no encoder outputs were accumulated")
        mean = self.s_mu / self.n
        e_var = self.s_var / self.n
        if self.full:
            cov_mu = self.s_mumu / self.n - torch.outer(mean, mean)
            cov = cov_mu + torch.diag(e_var)
        else:
            cov = torch.diag((self.s_mumu / self.n - mean.pow(2)).clamp_min(0.0) + e_var)
        cov = 0.5 * (cov + cov.T)
        return GaussianLatent(mean.float(), cov.float())


def aggregate_posterior(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], dim: int,
                        full: bool = False) -> GaussianLatent:
    """Aggregate-posterior Gaussian of an iterable of (mu, logvar) batches."""
    acc = AggregatePosterior(dim, full)
    for mu, logvar in batches:
        acc.update(mu, logvar)
    return acc.result()
