"""Loss terms and prior moments against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from ate_ros.core.align.losses import (
    kl_standard,
    kl_to_gaussian,
    mmd_imq,
    recon_loss,
    reference_mmd_c,
)
from ate_ros.core.align.prior import AggregatePosterior, GaussianLatent, aggregate_posterior


def test_kl_standard_hand_computed():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # dim 0: 0.5 (1 + 1 - 1 - 0) = 0.5; dim 1: 0.5 (0 + 2 - 1 - ln 2); mean over dims
    expected = (0.5 + 0.5 * (1.0 - math.log(2.0))) / 2
    assert kl_standard(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_to_gaussian_is_reverse_kl():
    """KL(q || p) with q = N(0, 1) the posterior, p = N(1, 4) the prior. Swapped args differ."""
    mu, logvar = torch.zeros(1, 1), torch.zeros(1, 1)
    prior_mean, prior_var = torch.tensor([1.0]), torch.tensor([4.0])
    forward = 0.5 * (1 / 4 + 1 / 4 - 1 + math.log(4.0))   # KL(N(0,1) || N(1,4)) = 0.4431
    swapped = 0.5 * (4 + 1 - 1 - math.log(4.0))            # KL(N(1,4) || N(0,1)) = 1.3069
    got = kl_to_gaussian(mu, logvar, prior_mean, prior_var).item()
    assert got == pytest.approx(forward, rel=1e-6)
    assert abs(got - swapped) > 0.5
    # full-covariance path gives the same value
    got_full = kl_to_gaussian(mu, logvar, prior_mean, torch.diag(prior_var)).item()
    assert got_full == pytest.approx(forward, rel=1e-6)


def test_kl_to_gaussian_full_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    Z = 3
    mu, logvar = torch.randn(4, Z, generator=g), torch.randn(4, Z, generator=g) * 0.3
    A = torch.randn(Z, Z, generator=g)
    cov = A @ A.T + 0.5 * torch.eye(Z)
    m = torch.randn(Z, generator=g)
    D = torch.distributions
    q = D.MultivariateNormal(mu.double(), torch.diag_embed(logvar.double().exp()))
    p = D.MultivariateNormal(m.double(), cov.double())
    ref = D.kl_divergence(q, p) / Z
    torch.testing.assert_close(kl_to_gaussian(mu, logvar, m, cov).double(), ref, rtol=1e-5,
                               atol=1e-6)
    # and it is not the other direction
    assert not torch.allclose(kl_to_gaussian(mu, logvar, m, cov).double(),
                              D.kl_divergence(p, q) / Z, rtol=1e-2)


def test_kl_standard_equals_kl_to_identity():
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(kl_standard(mu, logvar),
                               kl_to_gaussian(mu, logvar, torch.zeros(4), torch.ones(4)))


def test_mmd_imq_biased_and_unbiased():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[2.0], [3.0]])
    # k = 1 / (1 + d^2); kxx off-diag 0.5, kyy off-diag 0.5, kxy = [.2, .1, .5, .2]
    assert mmd_imq(x, y, c=1.0).item() == pytest.approx(0.75 + 0.75 - 2 * 0.25)
    assert mmd_imq(x, y, c=1.0, unbiased=True).item() == pytest.approx(0.5 + 0.5 - 2 * 0.25)
    # kernel uses the mean over dims: duplicating a dim leaves the value unchanged
    assert mmd_imq(x.repeat(1, 2), y.repeat(1, 2), c=1.0).item() == pytest.approx(1.0)
    assert reference_mmd_c(512) == 2048.0
    assert mmd_imq(x, x, c=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_recon_loss_only_masked_slots():
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[0.5, 10.0, 2.0], [0.5, 10.0, 2.0]]])
    mask = torch.tensor([[True, False, True]])
    # smooth L1 (beta 1): 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5 -> mean 0.8125
    assert recon_loss(pred, target, mask).item() == pytest.approx(0.8125)
    assert recon_loss(pred, target, mask, "mse").item() == pytest.approx((0.25 + 4) / 2)
    assert recon_loss(pred, target, mask, "l1").item() == pytest.approx(1.25)


def test_prior_is_aggregate_posterior_diag():
    mu = torch.tensor([[0.0], [2.0]])
    logvar = torch.log(torch.tensor([[1.0], [3.0]]))
    g = aggregate_posterior([(mu, logvar)], dim=1)
    # mean 1, Var(mu) = 1, E[sigma^2] = 2 -> 3 (the reference's mean(sigma) would give ~1.37)
    assert g.mean.item() == pytest.approx(1.0)
    assert g.cov.item() == pytest.approx(3.0)


def test_prior_is_aggregate_posterior_full_and_batched():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g) * 0.2
    acc = AggregatePosterior(3, full=True)
    for i in range(0, 50, 7):  # batching must not change the moments
        acc.update(mu[i:i + 7], logvar[i:i + 7])
    res = acc.result()
    m64 = mu.double()
    cov_mu = (m64 - m64.mean(0)).T @ (m64 - m64.mean(0)) / 50
    expected = cov_mu + torch.diag(logvar.double().exp().mean(0))
    torch.testing.assert_close(res.cov.double(), expected, rtol=1e-5, atol=1e-6)
    diag = aggregate_posterior([(mu, logvar)], 3, full=False)
    torch.testing.assert_close(diag.cov, torch.diag(torch.diagonal(res.cov)), rtol=1e-5,
                               atol=1e-6)


def test_gaussian_latent_sampling_and_mahalanobis():
    gl = GaussianLatent(torch.tensor([1.0, -1.0]), torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    s = gl.sample(20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.mean(0), gl.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(s.var(0), torch.tensor([4.0, 1.0]), atol=0.1, rtol=0)
    d = gl.mahalanobis_sq(torch.tensor([[3.0, -1.0], [1.0, 0.0]]))
    torch.testing.assert_close(d, torch.tensor([1.0, 1.0]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="mean"):
        GaussianLatent(torch.zeros(2), torch.eye(3))
