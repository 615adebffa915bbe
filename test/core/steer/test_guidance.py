"""ATE guidance: guided losses against hand-written formulas, batch invariance, NaN handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ate_ros.core.steer.guidance import (
    GuidanceConfig,
    LatentGuidance,
    guidance_coefficient,
    latent_gradient,
    masked_mse,
)

B, H, D, Z = 3, 4, 6, 5


class LinearEncoder(torch.nn.Module):
    """mu = W @ flatten(chunk); logvar = zeros. Frozen."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(torch.randn(Z, H * D, generator=g), requires_grad=False)

    def forward(self, x):
        mu = x.reshape(x.shape[0], -1) @ self.W.T
        return mu, torch.zeros_like(mu)


class MLPEncoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(H * D, 16),
                                       torch.nn.Tanh(), torch.nn.Linear(16, Z))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.net(x)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    a0 = torch.randn(B, H, D, generator=g)
    noise = torch.randn(B, H, D, generator=g)
    pred = torch.randn(B, H, D, generator=g)
    return a0, noise, pred


MASK = np.array([True, True, False, True, False, True])
SCALE = torch.tensor([0.5, 2.0, 1.0, 3.0, 1.0, 0.25])
SHIFT = torch.tensor([0.1, -0.2, 0.0, 0.3, 0.0, 1.0])


def _to_joint(x):
    return x * SCALE + SHIFT


def _hand_g(enc: LinearEncoder, xk: torch.Tensor, x0: torch.Tensor) -> np.ndarray:
    """d/dxk of -mean_z (W(s xk + b) - W(s x0 + b))^2, masked."""
    W = enc.W.detach().numpy().astype(np.float64)
    s = SCALE.numpy().astype(np.float64)
    out = np.zeros((xk.shape[0], H, D))
    for i in range(xk.shape[0]):
        diff = W @ ((xk[i].numpy() - x0[i].numpy()) * s).reshape(-1)  # (Z,)
        grad_u = (-2.0 / Z) * (W.T @ diff)  # d/du
        out[i] = grad_u.reshape(H, D) * s  # chain rule through x*s + b
    return out * MASK


def _hand_coef(param: str, level: float) -> float:
    return {"epsilon": -math.sqrt(1 - level),
            "sample": (1 - level) / math.sqrt(level),
            "flow_paper": (1 - level) / level,
            "flow_openpi": -level / (1 - level)}[param]


@pytest.mark.parametrize("param", ["epsilon", "sample", "flow_paper", "flow_openpi"])
@pytest.mark.parametrize("clamp_mode", ["element", "norm", "none"])
def test_guided_loss_matches_hand_formula(param, clamp_mode):
    enc = LinearEncoder()
    a0, noise, pred = _data()
    level = torch.tensor([0.2, 0.5, 0.9])
    if param in ("epsilon", "sample"):  # diffusion: x_k = sqrt(abar) a0 + sqrt(1-abar) eps
        xk = level.sqrt().view(B, 1, 1) * a0 + (1 - level).sqrt().view(B, 1, 1) * noise
        target = noise if param == "epsilon" else a0
    elif param == "flow_paper":
        xk = level.view(B, 1, 1) * a0 + (1 - level.view(B, 1, 1)) * noise
        target = a0 - noise
    else:
        xk = level.view(B, 1, 1) * noise + (1 - level.view(B, 1, 1)) * a0
        target = noise - a0
    lam, clamp = 2.0, 0.05
    cfg = GuidanceConfig(scale=lam, clamp=clamp, clamp_mode=clamp_mode,
                         direction="paper")
    guide = LatentGuidance(enc, param, cfg, mask=MASK, to_encoder=_to_joint)
    loss, stats = guide.loss(pred, target, xk, a0, level)

    g = _hand_g(enc, xk, a0)
    expected = 0.0
    for i in range(B):
        cg = _hand_coef(param, float(level[i])) * g[i]
        if clamp_mode == "element":
            cg = np.clip(cg, -clamp, clamp)
        elif clamp_mode == "norm":
            rms = np.sqrt((cg[:, MASK] ** 2).mean())
            cg = cg * min(1.0, clamp / rms)
        # the doc formulas, e.g. eps: ||eps - eps_theta + sqrt(1-abar) lambda g||^2
        r = pred[i].numpy() + lam * cg - target[i].numpy()
        expected += (r[:, MASK] ** 2).mean() / B
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert stats.applied == B and stats.skipped_nonfinite == 0


def test_coefficients_match_method_doc():
    lv = torch.tensor([0.25])
    assert float(guidance_coefficient("epsilon", lv)) == pytest.approx(-math.sqrt(0.75))
    assert float(guidance_coefficient("sample", lv)) == pytest.approx(0.75 / 0.5)
    assert float(guidance_coefficient("flow_paper", lv)) == pytest.approx(3.0)
    assert float(guidance_coefficient("flow_openpi", lv)) == pytest.approx(-1 / 3)
    # the exploding ends stay finite
    assert torch.isfinite(guidance_coefficient("flow_openpi", torch.tensor([1.0])))
    assert torch.isfinite(guidance_coefficient("flow_paper", torch.tensor([0.0])))


@pytest.mark.parametrize("param", ["epsilon", "flow_openpi"])
def test_guidance_off_is_exactly_plain_loss(param):
    enc = MLPEncoder()
    a0, noise, pred = _data(3)
    level = torch.tensor([0.3, 0.6, 0.8])
    target = noise if param == "epsilon" else noise - a0
    off = LatentGuidance(enc, param, GuidanceConfig(enabled=False), mask=MASK)
    t_off, stats = off.guided_target(target, noise, a0, level)
    assert t_off is target and stats.applied == 0
    l_off, _ = off.loss(pred, target, noise, a0, level)
    assert torch.equal(l_off, masked_mse(pred, target, MASK))
    zero = LatentGuidance(enc, param, GuidanceConfig(scale=0.0), mask=MASK)
    assert zero.guided_target(target, noise, a0, level)[0] is target


@pytest.mark.parametrize("enc_cls", [LinearEncoder, MLPEncoder])
def test_gradient_invariant_to_batch_size(enc_cls):
    enc = enc_cls()
    g = torch.Generator().manual_seed(5)
    xk, x0 = torch.randn(8, H, D, generator=g), torch.randn(8, H, D, generator=g)
    guide = LatentGuidance(enc, "epsilon", GuidanceConfig(clamp=0.0, direction="paper"), mask=MASK)
    g_batch = guide.gradient(xk, x0)
    g_alone = guide.gradient(xk[2:3], x0[2:3])
    torch.testing.assert_close(g_alone[0], g_batch[2], rtol=1e-5, atol=1e-7)
    lv = torch.full((8,), 0.5)
    term8, _ = guide.guidance_term(xk, x0, lv)
    term1, _ = guide.guidance_term(xk[2:3], x0[2:3], lv[:1])
    torch.testing.assert_close(term1[0], term8[2], rtol=1e-5, atol=1e-7)
    assert torch.all(g_batch[..., ~torch.as_tensor(MASK)] == 0)


def test_gradient_builds_no_graph_and_leaves_encoder_untouched():
    enc = MLPEncoder()
    for p in enc.parameters():
        p.requires_grad_(True)
    xk = torch.randn(2, H, D, requires_grad=True)
    g = latent_gradient(enc, xk * 2, torch.randn(2, H, D))
    assert not g.requires_grad and g.grad_fn is None
    assert all(p.grad is None for p in enc.parameters())
    assert xk.grad is None
    assert not torch.is_anomaly_enabled()


def test_nonfinite_gradient_skips_sample_and_counts():
    enc = MLPEncoder()
    a0, noise, pred = _data(7)
    noise[1, 0, 0] = float("nan")  # sample 1's g is NaN
    guide = LatentGuidance(enc, "epsilon", GuidanceConfig(clamp=0.0, direction="paper"), mask=MASK)
    target = torch.zeros_like(a0)
    tgt, stats = guide.guided_target(target, noise, a0, torch.full((B,), 0.5))
    assert stats.skipped_nonfinite == 1 and stats.applied == 2
    assert torch.all(tgt[1] == 0) and torch.isfinite(tgt).all()
    assert guide.total_skipped == 1
    assert not torch.all(tgt[0] == 0)


def test_horizon_shorter_than_chunk():
    enc = LinearEncoder()
    xk, x0 = torch.randn(2, H + 3, D), torch.randn(2, H + 3, D)
    guide = LatentGuidance(enc, "sample", GuidanceConfig(direction="paper"), mask=MASK,
                           horizon=H)
    g = guide.gradient(xk, x0)
    assert g.shape == xk.shape and torch.all(g[:, H:] == 0)
    with pytest.raises(ValueError, match="horizon"):
        LatentGuidance(enc, "sample", horizon=H + 10).gradient(xk, x0)


def test_config_validation():
    with pytest.raises(ValueError, match="clamp_mode"):
        GuidanceConfig(clamp_mode="bogus")
    with pytest.raises(ValueError, match="scale must be >= 0"):
        GuidanceConfig(scale=-1)
    with pytest.raises(ValueError, match="parameterization"):
        LatentGuidance(MLPEncoder(), "v_prediction")


def test_classifier_direction_flips_only_the_sign() -> None:
    """direction='classifier' is the published term with the opposite sign, nothing else."""
    import torch

    from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance

    torch.manual_seed(0)
    w = torch.randn(3 * 4, 5)

    def enc(x):
        return torch.tanh(x.reshape(x.shape[0], -1) @ w)

    noisy, clean = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    level = torch.tensor([0.3, 0.8])
    target = torch.randn(2, 3, 4)
    paper = LatentGuidance(enc, "sample", GuidanceConfig(scale=2.0, clamp=0.0,
                                                          direction="paper"))
    classifier = LatentGuidance(enc, "sample", GuidanceConfig(scale=2.0, clamp=0.0,
                                                              direction="classifier"))
    t_paper, _ = paper.guided_target(target, noisy, clean, level)
    t_cls, _ = classifier.guided_target(target, noisy, clean, level)
    torch.testing.assert_close(t_paper - target, -(t_cls - target))
    assert (t_paper - target).abs().max() > 0
    # Classifier direction: for x0 prediction the clean target moves up grad log p(y | a_k).
    g = -torch.autograd.functional.jacobian(
        lambda x: (enc(x) - enc(clean)).pow(2).mean(-1).sum(), noisy)
    assert ((t_cls - target) * g).sum() > 0


# ----- the faster guidance (#31) reproduces the previous formulation -----------------------------
def _previous_and_current(bundle, param: str, cfg: GuidanceConfig, **kw):
    from support.previous_guidance import PreviousGuidance, previous_bundle_encoder

    from ate_ros.core.steer.guidance import encoder_from_bundle

    old = PreviousGuidance(previous_bundle_encoder(bundle), param, cfg, mask=bundle.mask, **kw)
    new = LatentGuidance(encoder_from_bundle(bundle), param, cfg, mask=bundle.mask, **kw)
    return old, new


@pytest.mark.parametrize("param", ["epsilon", "sample", "flow_paper", "flow_openpi"])
@pytest.mark.parametrize("direction", ["classifier", "paper"])
@pytest.mark.parametrize("clamp_mode", ["norm", "element", "none"])
def test_guided_target_equals_previous_formulation(param, direction, clamp_mode):
    from support.tiny_alignment import random_bundle

    bundle = random_bundle(8)
    Bn = 6
    g = torch.Generator().manual_seed(5)
    mask = torch.as_tensor(bundle.mask)
    clean = torch.randn(Bn, 8, 128, generator=g) * mask
    noisy = clean + torch.randn(Bn, 8, 128, generator=g) * mask
    noisy[4, 2, 1] = float("nan")  # one sample gets no guidance
    target = torch.randn(Bn, 8, 128, generator=g)
    level = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.9, 0.99])
    offset = torch.randn(Bn, 1, 128, generator=g) * mask
    # a clamp that some samples hit and some do not
    cfg = GuidanceConfig(scale=2.0, clamp=0.002, clamp_mode=clamp_mode, direction=direction)
    old, new = _previous_and_current(bundle, param, cfg, to_encoder=lambda x: 3.0 * x - 0.5)
    g_old, g_new = old.gradient(noisy, clean, offset), new.gradient(noisy, clean, offset)
    assert torch.equal(torch.isfinite(g_new), torch.isfinite(g_old))
    assert not torch.isfinite(g_old[4]).all()  # the NaN sample, in both
    g_old, g_new = g_old[[0, 1, 2, 3, 5]], g_new[[0, 1, 2, 3, 5]]
    torch.testing.assert_close(g_new, g_old, rtol=0, atol=1e-6)
    assert (g_new - g_old).abs().max() <= 1e-5 * g_old.abs().max()
    t_old, s_old = old.guided_target(target, noisy, clean, level, offset)
    t_new, s_new = new.guided_target(target, noisy, clean, level, offset)
    assert (t_old - target).abs().max() > 1e-4  # guidance moved the target
    # Unclamped, c reaches -99 (flow_openpi at t = 0.99) and the term ~10: float32 rounding of
    # g (~1e-6 relative, above) is compared relative to the term's size there.
    term_size = float((t_old - target).abs().max())
    torch.testing.assert_close(t_new, t_old, rtol=0, atol=max(1e-6, 1e-5 * term_size))
    assert s_new.applied == s_old.applied == Bn - 1 and s_new.skipped_nonfinite == 1
    assert s_new.as_dict() == pytest.approx(s_old.as_dict(), rel=1e-5, abs=1e-9)
    if clamp_mode == "norm":
        assert 0 < s_old.clamped_fraction < 1
    elif clamp_mode == "element":
        assert s_old.clamped_fraction > 0


@pytest.mark.parametrize("head", [
    {"head": "diffusion", "prediction_type": "epsilon"},
    {"head": "diffusion", "prediction_type": "sample"},
    {"head": "flow", "flow_convention": "openpi"},
    {"head": "flow", "flow_convention": "paper"},
], ids=["epsilon", "x0", "flow-openpi", "flow-paper"])
@pytest.mark.parametrize("direction", ["classifier", "paper"])
def test_policy_loss_and_gradients_equal_previous_formulation(head, direction):
    """A fine-tuning step's loss and parameter gradients are those of the previous guidance."""
    from support.tiny_alignment import random_bundle
    from support.tiny_policy import TEXT_DIM, tiny_vla_config

    from ate_ros.core.steer.policies import (
        ACTION,
        OBS_IMAGES,
        OBS_MASK,
        OBS_STATE,
        OBS_TEXT,
        VLAPolicy,
    )

    cfg = tiny_vla_config(**head, action_mode="relative")
    torch.manual_seed(0)
    policy = VLAPolicy(cfg).train()
    bundle = random_bundle(cfg.chunk_size)
    Bn, g = 5, torch.Generator().manual_seed(2)
    mask = torch.as_tensor(bundle.mask).expand(Bn, -1)
    actions = torch.randn(Bn, cfg.chunk_size, 128, generator=g) * mask[:, None]
    batch = {OBS_IMAGES: torch.randint(0, 255, (Bn, 1, 16, 16, 3), generator=g,
                                       dtype=torch.uint8),
             OBS_STATE: actions[:, 0] + 0.1, OBS_MASK: mask.clone(),
             OBS_TEXT: torch.randn(Bn, TEXT_DIM, generator=g), ACTION: actions}
    gcfg = GuidanceConfig(scale=2.0, direction=direction)
    old, new = _previous_and_current(bundle, policy.parameterization, gcfg,
                                     to_encoder=policy.unnormalize_action)
    results = []
    for guide in (old, new, None):
        policy.zero_grad(set_to_none=True)
        loss, logs = policy(batch, guidance=guide, generator=torch.Generator().manual_seed(9))
        loss.backward()
        results.append((float(loss.detach()), [p.grad.clone() for p in policy.parameters()
                                      if p.grad is not None], logs))
    (l_old, g_old, logs_old), (l_new, g_new, logs_new), (l_plain, _, _) = results
    assert l_old != l_plain  # guidance changed the loss
    assert l_new == pytest.approx(l_old, rel=1e-6, abs=1e-7)
    assert len(g_new) == len(g_old) > 0
    for a, b in zip(g_new, g_old):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert logs_new["guidance/applied"] == logs_old["guidance/applied"] == Bn
