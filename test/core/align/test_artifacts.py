"""Alignment artefacts: save/load round trip, the steer contract, and load-time checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ate_ros.core.align import (
    ActionVAE,
    AlignmentBundle,
    GaussianLatent,
    StageModel,
    VAEConfig,
    load_alignment,
    write_alignment,
)
from ate_ros.core.align.synthetic import toy_arm
from ate_ros.core.normalization import NormStats
from ate_ros.core.training.files import CheckpointError


def _stage(arch: str, seed: int, H: int = 8, Z: int = 6) -> StageModel:
    torch.manual_seed(seed)
    cfg = VAEConfig(arch=arch, chunk_size=H, latent_dim=Z, d_model=32, ffn_dim=64,
                    num_encoder_layers=1, num_decoder_layers=1, mlp_hidden=32)
    rng = np.random.default_rng(seed)
    norm = NormStats(mean=rng.normal(size=128), std=rng.uniform(0.5, 2, 128),
                     min=-np.ones(128), max=np.ones(128))
    return StageModel(ActionVAE(cfg), norm)


@pytest.fixture(params=["transformer", "mlp"])
def written(request, tmp_path):
    s1, s2 = _stage(request.param, 0), _stage(request.param, 1)
    ada, pre = toy_arm("arm4", 4), toy_arm("arm3", 3)
    A = torch.randn(6, 6)
    prior = GaussianLatent(torch.randn(6), A @ A.T + torch.eye(6))
    adapt = GaussianLatent(torch.randn(6), torch.diag(torch.rand(6) + 0.5))
    write_alignment(tmp_path, s1, s2, prior, adapt, ada, [pre])
    mem = AlignmentBundle(s1, s2, prior, adapt, ada, [pre], {}, torch.device("cpu"))
    return tmp_path, mem


def test_round_trip_reproduces_encode_exactly(written):
    folder, mem = written
    b = load_alignment(folder)
    chunks = torch.randn(5, 8, 128)
    for stage in (1, 2):
        for x, y in zip(mem.encode(chunks, stage), b.encode(chunks, stage)):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    torch.testing.assert_close(mem.ood_score(chunks), b.ood_score(chunks), rtol=0, atol=0)
    assert b.chunk_size == 8 and b.latent_dim == 6
    assert b.mask.shape == (128,) and b.mask.dtype == bool and b.mask.sum() == 4
    assert b.embodiment_ada.name == "arm4" and b.embodiment_pre.name == "arm3"
    assert b.prior_cov.shape == (6, 6) and b.adapt_mean.shape == (6,)
    torch.testing.assert_close(b.prior_mean, mem.prior_mean)


def test_encode_contract(written):
    folder, _ = written
    b = load_alignment(folder)
    assert all(not p.requires_grad for p in b.stage2.model.parameters())
    assert not b.stage2.model.training
    chunks = torch.randn(3, 8, 128, requires_grad=True)
    mu, logvar = b.encode(chunks)
    assert mu.shape == logvar.shape == (3, 6)
    mu.pow(2).sum().backward()
    g = chunks.grad
    assert g is not None and g.abs().sum() > 0
    # off-mask slots are ignored: no gradient, and changing them does not change mu
    assert torch.all(g[..., ~torch.from_numpy(b.mask)] == 0)
    moved = chunks.detach().clone()
    moved[..., 100] += 5.0
    torch.testing.assert_close(b.encode(moved)[0], mu.detach())
    assert b.ood_score(chunks).shape == (3,)
    with pytest.raises(ValueError, match=r"\(B, 8, 128\)"):
        b.encode(torch.randn(3, 7, 128))
    with pytest.raises(ValueError, match="unified"):
        b.encode(torch.randn(3, 8, 4))



def test_encode_mean_is_encode_mu_with_its_gradient(written):
    """What guidance differentiates through: the stage's normalisation and posterior mean."""
    _, b = written
    x = torch.randn(4, 8, 128) * 2 + 1
    for stage in (1, 2):
        sm = b.stage1 if stage == 1 else b.stage2
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        # the normalisation as saved (NormStats.normalize), then the full encoder
        mu = sm.model.encode(sm.norm.normalize(xa), torch.from_numpy(b.mask).expand(4, -1))[0]
        mu_fast = b.encode_mean(xb, stage)
        torch.testing.assert_close(mu_fast, mu, rtol=0, atol=1e-6)
        (ga,) = torch.autograd.grad(mu.pow(2).sum(), xa)
        (gb,) = torch.autograd.grad(mu_fast.pow(2).sum(), xb)
        assert ga.abs().max() > 1e-3
        torch.testing.assert_close(gb, ga, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 8, 128\)"):
        b.encode_mean(torch.randn(3, 7, 128))
    with pytest.raises(ValueError, match="stage must be"):
        b.encode_mean(x, stage=3)

def test_ood_score_is_one_in_distribution(tmp_path):
    s = _stage("mlp", 0)
    ada = toy_arm("arm4", 4)
    chunks = torch.randn(400, 8, 128)
    mu, lv = s.model.encode(s.norm.normalize(chunks), torch.from_numpy(ada.mask).expand(400, -1))
    from ate_ros.core.align import aggregate_posterior

    adapt = aggregate_posterior([(mu.detach(), torch.full_like(mu, -20.0))], 6, full=True)
    b = AlignmentBundle(s, s, GaussianLatent.standard(6), adapt, ada, [ada], {},
                        torch.device("cpu"))
    assert b.ood_score(chunks).mean().item() == pytest.approx(1.0, rel=0.05)
    assert b.ood_score(chunks * 10).mean().item() > 3


def test_load_mismatch_errors(written):
    folder, _ = written
    cfg = json.loads((folder / "config.json").read_text())
    cfg["stage2"]["vae"]["latent_dim"] = 12
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_alignment(folder)
    cfg["stage2"]["vae"]["latent_dim"] = 6
    cfg["mask"] = [0, 1]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="mask"):
        load_alignment(folder)
    cfg["format"] = "something"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not an alignment output"):
        load_alignment(folder)
    with pytest.raises(CheckpointError, match="not found"):
        load_alignment(folder / "nope")


def test_stage1_only_folder_is_refused(tmp_path):
    s1 = _stage("mlp", 0)
    write_alignment(tmp_path, s1, None, GaussianLatent.standard(6), None, None,
                    [toy_arm("arm3", 3)])
    with pytest.raises(CheckpointError, match="only stage 1"):
        load_alignment(tmp_path)


def test_missing_stage2_weights_refused(tmp_path, written):
    folder, _ = written
    (folder / "stage2.safetensors").rename(folder / "stage2.pt")
    with pytest.raises(CheckpointError):
        load_alignment(folder)
