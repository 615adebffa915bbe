"""ATE guidance inside LeRobot losses: equal to LeRobot's own loss with guidance off, equal to
the hand-written guided formula with it on (DiffusionPolicy epsilon / sample, and the openpi
flow convention on a stand-in with pi0's loss signature)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")

from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.lerobot_compat import require_lerobot  # noqa: E402
from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance  # noqa: E402
from ate_ros.core.steer.lerobot.adapters import (  # noqa: E402
    DiffusionGuidedLoss,
    FlowGuidedLoss,
    LeRobotActionSpace,
    flow_policy_loss,
    make_guidance,
    shift_flow_inputs,
)

require_lerobot()

from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature  # noqa: E402
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig  # noqa: E402
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402
from lerobot.policies.diffusion.processor_diffusion import (  # noqa: E402
    make_diffusion_pre_post_processors,
)

D, HORIZON, N_OBS, VAE_H, Z = 3, 8, 2, 4, 5
EMB = Embodiment(name="lr3", joints=[JointSpec(name=f"j{i}", slot=s, lower=-2.0, upper=2.0)
                                     for i, s in enumerate([0, 1, 10])])
STATS = {"action": {"mean": torch.tensor([0.1, -0.2, 0.3]), "std": torch.tensor([0.5, 1.5, 2.0]),
                    "min": torch.tensor([-1.0, -2.0, 0.0]), "max": torch.tensor([1.0, 1.0, 3.0])},
         "observation.state": {"mean": torch.zeros(D), "std": torch.ones(D)},
         "observation.environment_state": {"mean": torch.zeros(2), "std": torch.ones(2)}}


def _policy(prediction_type: str) -> tuple[DiffusionPolicy, LeRobotActionSpace]:
    torch.manual_seed(0)
    cfg = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (D,)),
                        "observation.environment_state": PolicyFeature(FeatureType.ENV, (2,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (D,))},
        horizon=HORIZON, n_action_steps=4, n_obs_steps=N_OBS, down_dims=(8, 16), kernel_size=3,
        n_groups=4, diffusion_step_embed_dim=8, num_train_timesteps=20,
        prediction_type=prediction_type, do_mask_loss_for_padding=True, device="cpu",
        normalization_mapping={"STATE": NormalizationMode.MEAN_STD,
                               "ENV": NormalizationMode.MEAN_STD,
                               "ACTION": NormalizationMode.MIN_MAX})
    policy = DiffusionPolicy(cfg)
    _, post = make_diffusion_pre_post_processors(cfg, STATS)
    return policy, LeRobotActionSpace.from_postprocessor(post, EMB, D)


def _batch(B: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    pad = torch.zeros(B, HORIZON, dtype=torch.bool)
    pad[0, -2:] = True
    return {"observation.state": torch.randn(B, N_OBS, D, generator=g),
            "observation.environment_state": torch.randn(B, N_OBS, 2, generator=g),
            "action": torch.rand(B, HORIZON, D, generator=g) * 2 - 1, "action_is_pad": pad}


class _Encoder(torch.nn.Module):
    """A fixed non-linear stand-in for the stage-2 encoder: (B, VAE_H, 128) -> (B, Z)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = torch.randn(VAE_H * UNIFIED_DIM, Z, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.reshape(x.shape[0], -1) @ self.w)


def test_action_space_matches_lerobot_postprocessor():
    policy, space = _policy("epsilon")
    _, post = make_diffusion_pre_post_processors(policy.config, STATS)
    x = torch.rand(2, HORIZON, D) * 2 - 1
    u = space.to_unified(x)
    assert u.shape == (2, HORIZON, UNIFIED_DIM)
    np.testing.assert_allclose(u[..., EMB.slots].numpy(), post(x).numpy(), rtol=1e-6)
    assert float(u[..., ~EMB.mask].abs().sum()) == 0.0


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_guidance_off_is_lerobot_loss_bit_for_bit(prediction_type):
    policy, space = _policy(prediction_type)
    policy.train()
    batch = _batch()
    torch.manual_seed(7)
    ref, _ = policy.forward(batch)
    guide = make_guidance(_Encoder(), prediction_type, GuidanceConfig(enabled=False), space,
                          VAE_H)
    for g in (None, guide):
        torch.manual_seed(7)
        loss, logs = DiffusionGuidedLoss(policy, g)(batch)
        assert torch.equal(loss, ref)
        assert not any(k.startswith("guidance/") for k in logs)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_guided_loss_equals_hand_written_formula(prediction_type):
    policy, space = _policy(prediction_type)
    policy.train()
    enc, batch = _Encoder(), _batch()
    lam, clamp = 2.0, 0.05
    cfg = GuidanceConfig(scale=lam, clamp=clamp, clamp_mode="norm", direction="paper")
    torch.manual_seed(7)
    loss, logs = DiffusionGuidedLoss(policy, make_guidance(enc, prediction_type, cfg, space,
                                                           VAE_H))(batch)
    assert logs["guidance/applied"] == 4

    # The same draws, by hand.
    torch.manual_seed(7)
    model = policy.diffusion
    cond = model._prepare_global_conditioning(batch)
    a0 = batch["action"]
    eps = torch.randn(a0.shape)
    t = torch.randint(0, 20, (a0.shape[0],)).long()
    noisy = model.noise_scheduler.add_noise(a0, eps, t)
    pred = model.unet(noisy, t, global_cond=cond)
    abar = model.noise_scheduler.alphas_cumprod[t].view(-1, 1, 1)
    s = N_OBS - 1  # window of the current step
    x = noisy[:, s:s + VAE_H].detach().requires_grad_(True)
    with torch.no_grad():
        z0 = enc(space.to_unified(a0[:, s:s + VAE_H]))
    dist = (enc(space.to_unified(x)) - z0).pow(2).mean(-1).sum()
    (g,) = torch.autograd.grad(-dist, x)
    c = -(1 - abar).sqrt() if prediction_type == "epsilon" else (1 - abar) / abar.sqrt()
    scaled = c * g
    rms = scaled.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
    scaled = torch.where(rms > clamp, scaled * clamp / rms, scaled)
    target = (eps if prediction_type == "epsilon" else a0).clone()
    target[:, s:s + VAE_H] -= lam * scaled
    expected = ((pred - target) ** 2 * (~batch["action_is_pad"]).unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(loss, ((pred - (eps if prediction_type == "epsilon" else a0)) ** 2
                                     * (~batch["action_is_pad"]).unsqueeze(-1)).mean())


def test_parameterisation_must_match_prediction_type():
    policy, space = _policy("epsilon")
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionGuidedLoss(policy, make_guidance(_Encoder(), "sample", GuidanceConfig(), space,
                                                  VAE_H))


# ----- flow matching (pi0 / pi0.5 / SmolVLA convention) ----------------------------------------
class _StandInPI0Model(torch.nn.Module):
    """pi0's inner model reduced to one linear layer, with PI0Pytorch's loss code verbatim."""

    def __init__(self, dim: int, chunk: int) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.net = torch.nn.Linear(dim + 1 + 4, dim)
        self.chunk = chunk

    def sample_noise(self, shape, device):
        return torch.normal(mean=0.0, std=1.0, size=shape, dtype=torch.float32, device=device)

    def sample_time(self, bsize, device):
        return torch.rand(bsize, device=device) * 0.998 + 0.001

    def forward(self, images, img_masks, lang_tokens, lang_masks, state, actions, noise=None,
                time=None):
        if noise is None:
            noise = self.sample_noise(actions.shape, actions.device)
        if time is None:
            time = self.sample_time(actions.shape[0], actions.device)
        time_expanded = time[:, None, None]
        x_t = time_expanded * noise + (1 - time_expanded) * actions
        u_t = noise - actions
        cond = state[:, None, :4].expand(-1, x_t.shape[1], -1)
        v_t = self.net(torch.cat([x_t, time_expanded.expand(-1, x_t.shape[1], 1), cond], -1))
        return torch.nn.functional.mse_loss(u_t, v_t, reduction="none")


class _StandInPI0Policy:
    """The parts of PI0Policy that ``flow_policy_loss`` uses (same names and shapes)."""

    name = "pi0"

    def __init__(self, max_dim: int, chunk: int) -> None:
        from types import SimpleNamespace

        self.model = _StandInPI0Model(max_dim, chunk)
        self.config = SimpleNamespace(
            output_features={"action": PolicyFeature(FeatureType.ACTION, (D,))})
        self.max_dim = max_dim

    def _preprocess_images(self, batch):
        return [batch["observation.images.front"]], [torch.ones(batch["action"].shape[0],
                                                                dtype=torch.bool)]

    def prepare_state(self, batch):
        return torch.nn.functional.pad(batch["observation.state"],
                                       (0, self.max_dim - D))

    def prepare_action(self, batch):
        return torch.nn.functional.pad(batch["action"], (0, self.max_dim - D))


def test_stand_in_has_lerobot_pi0_signatures():
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy, PI0Pytorch

    assert (list(inspect.signature(_StandInPI0Model.forward).parameters)
            == list(inspect.signature(PI0Pytorch.forward).parameters))
    for name in ("sample_noise", "sample_time"):
        assert (list(inspect.signature(getattr(_StandInPI0Model, name)).parameters)
                == list(inspect.signature(getattr(PI0Pytorch, name)).parameters))
    for name in ("_preprocess_images", "prepare_state", "prepare_action"):
        assert hasattr(PI0Policy, name)
    assert PI0Policy.name == "pi0"


def test_shift_keeps_x_t_and_moves_the_target():
    g = torch.Generator().manual_seed(0)
    noise, a, term = (torch.randn(3, 5, 2, generator=g) for _ in range(3))
    t = torch.rand(3, generator=g)
    n2, a2 = shift_flow_inputs(noise, a, t, term)
    tt = t.view(-1, 1, 1)
    torch.testing.assert_close(tt * n2 + (1 - tt) * a2, tt * noise + (1 - tt) * a)
    torch.testing.assert_close(n2 - a2, noise - a - term)


def _flow_batch(B=4, chunk=6):
    g = torch.Generator().manual_seed(2)
    return {"observation.images.front": torch.rand(B, 3, 8, 8, generator=g),
            "observation.state": torch.randn(B, D, generator=g),
            "observation.language.tokens": torch.zeros(B, 4, dtype=torch.long),
            "observation.language.attention_mask": torch.ones(B, 4, dtype=torch.bool),
            "action": torch.rand(B, chunk, D, generator=g) * 2 - 1}


def test_flow_guidance_off_is_the_models_loss():
    policy, batch = _StandInPI0Policy(max_dim=6, chunk=6), _flow_batch()
    torch.manual_seed(9)
    ref = policy.model.forward(*[None] * 4, policy.prepare_state(batch),
                               policy.prepare_action(batch))[:, :, :D].mean()
    torch.manual_seed(9)
    loss, logs = flow_policy_loss(policy, batch, FlowGuidedLoss(None))
    assert torch.equal(loss, ref) and "guidance/applied" not in logs


def test_flow_guided_loss_equals_openpi_formula():
    _, space = _policy("epsilon")
    policy, batch = _StandInPI0Policy(max_dim=6, chunk=6), _flow_batch()
    enc, lam, clamp = _Encoder(), 2.0, 0.05
    cfg = GuidanceConfig(scale=lam, clamp=clamp, direction="paper")
    guide = make_guidance(enc, "flow_openpi", cfg, space, VAE_H, padded_dim=6)
    torch.manual_seed(9)
    loss, logs = flow_policy_loss(policy, batch, FlowGuidedLoss(guide, window_start=1))
    assert logs["guidance/applied"] == 4

    torch.manual_seed(9)
    a = policy.prepare_action(batch)
    noise = torch.normal(0.0, 1.0, size=a.shape)
    t = torch.rand(a.shape[0]) * 0.998 + 0.001
    tt = t.view(-1, 1, 1)
    x_t = tt * noise + (1 - tt) * a
    x = x_t[:, 1:1 + VAE_H].detach().requires_grad_(True)
    with torch.no_grad():
        z0 = enc(space.to_unified(a[:, 1:1 + VAE_H]))
    (g,) = torch.autograd.grad(-(enc(space.to_unified(x)) - z0).pow(2).mean(-1).sum(), x)
    scaled = (-tt / (1 - tt)) * g
    rms = (scaled.pow(2).sum(dim=(1, 2), keepdim=True) / (VAE_H * D)).sqrt()
    scaled = torch.where(rms > clamp, scaled * clamp / rms, scaled)
    u = noise - a
    u[:, 1:1 + VAE_H] -= lam * scaled
    state = policy.prepare_state(batch)
    cond = state[:, None, :4].expand(-1, 6, -1)
    v = policy.model.net(torch.cat([x_t, tt.expand(-1, 6, 1), cond], -1))
    expected = ((u - v) ** 2)[:, :, :D].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert float(scaled[:, :, D:].abs().max()) == 0.0  # pi0's padded action dims get no term


def test_flow_guidance_refuses_diffusion_parameterisation():
    with pytest.raises(ValueError, match="flow_openpi"):
        FlowGuidedLoss(LatentGuidance(_Encoder(), "epsilon"))
