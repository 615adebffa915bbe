"""ActionVAE.encode_mean: the posterior mean of ``encode`` and its input gradient, at less cost."""

from __future__ import annotations

import pytest
import torch

from ate_ros.core.align import ActionVAE, VAEConfig

H = 6


def _vae(**cfg) -> ActionVAE:
    torch.manual_seed(3)
    vae = ActionVAE(VAEConfig(chunk_size=H, latent_dim=8, d_model=32, ffn_dim=48, num_heads=4,
                              mlp_hidden=32, **cfg)).eval()
    for p in vae.parameters():  # off the default init (LayerNorms at 1/0 look alike)
        p.requires_grad_(False).add_(torch.randn_like(p) * 0.1)
    return vae


def _inputs(B: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(B, 128, dtype=torch.bool)
    mask[:, :7] = True
    mask[1, 7:9] = True  # one sample of another embodiment
    return torch.randn(B, H, 128, generator=g), mask


@pytest.mark.parametrize("cfg", [
    {"num_encoder_layers": 2, "num_latent_tokens": 1},
    {"num_encoder_layers": 1, "num_latent_tokens": 1},
    {"num_encoder_layers": 3, "num_latent_tokens": 2},
    {"arch": "mlp", "mlp_layers": 2},
], ids=["transformer-2x1", "transformer-1x1", "transformer-3x2", "mlp"])
def test_encode_mean_equals_encode_mu_and_its_gradient(cfg):
    vae = _vae(**cfg)
    x, mask = _inputs()
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    mu = vae.encode(xa, mask)[0]
    mu_fast = vae.encode_mean(xb, mask)
    assert mu_fast.shape == mu.shape == (5, 8)
    torch.testing.assert_close(mu_fast, mu, rtol=0, atol=1e-6)
    w = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    (ga,) = torch.autograd.grad((mu * w).sum(), xa)
    (gb,) = torch.autograd.grad((mu_fast * w).sum(), xb)
    assert ga.abs().max() > 1e-3  # the gradient is not trivially zero
    torch.testing.assert_close(gb, ga, rtol=0, atol=1e-6)


def test_encode_mean_checks_shapes_as_encode():
    vae = _vae()
    x, mask = _inputs()
    with pytest.raises(ValueError, match="chunks must be"):
        vae.encode_mean(x[:, :-1], mask)
    with pytest.raises(ValueError, match="mask must be"):
        vae.encode_mean(x, mask[:, :64])
