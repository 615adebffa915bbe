"""Real-time chunking sampling (ate_ros.core.steer.rtc): the paper's weight schedules, the
guidance against LeRobot's RTCProcessor on the same denoiser, batch independence and the
committed prefix reproduced by hard-weighted sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support.paths import ROOT  # noqa: E402

from ate_ros.core.lerobot_compat import require_lerobot
from ate_ros.core.steer.rtc import (
    LatencyEstimate,
    RTCConfig,
    RTCProcessor,
    flow_equivalent,
    guidance_weight,
    prefix_weights,
)

LOWDIM = ROOT / "assets" / "pretrained_lowdim"


def _paper_weights(schedule: str, d: int, end: int, H: int) -> list[float]:
    """Paper eq. 5 written out per index: 1 below d, c_i (or c_i (e^c_i - 1)/(e - 1)) below
    H - s (here ``end``), 0 after, c_i = (end - i) / (end - d + 1)."""
    out = []
    for i in range(H):
        if i < d:
            out.append(1.0)
        elif i < end:
            c = (end - i) / (end - d + 1)
            out.append(c * (math.exp(c) - 1) / (math.e - 1) if schedule == "exp" else c)
        else:
            out.append(0.0)
    return out


@pytest.mark.parametrize("schedule", ["exp", "linear"])
@pytest.mark.parametrize("d,end,H", [(0, 5, 8), (2, 6, 8), (3, 3, 8), (4, 16, 16), (1, 8, 8)])
def test_prefix_weights_are_the_papers(schedule, d, end, H):
    w = prefix_weights(schedule, d, end, H)
    np.testing.assert_allclose(w.numpy(), _paper_weights(schedule, d, end, H), atol=1e-6)


def test_prefix_weight_shape_of_the_schedule():
    w = prefix_weights("exp", 3, 10, 12).numpy()
    assert (w[:3] == 1).all() and (w[10:] == 0).all()
    assert (np.diff(w[2:11]) < 0).all()  # strictly decaying through the soft region
    assert w[3] < 1 and w[9] > 0
    np.testing.assert_array_equal(prefix_weights("zeros", 3, 10, 12).numpy(),
                                  [1, 1, 1] + [0] * 9)
    np.testing.assert_array_equal(prefix_weights("ones", 3, 10, 12).numpy(),
                                  [1] * 10 + [0] * 2)
    # d beyond the horizon is capped (LeRobot: start = min(start, end)).
    np.testing.assert_array_equal(prefix_weights("exp", 6, 4, 8).numpy(), [1] * 4 + [0] * 4)


def test_guidance_weight_is_the_papers_clipped_at_beta():
    for tau in (0.05, 0.3, 0.5, 0.8, 0.97):
        r2 = (1 - tau) ** 2 / ((1 - tau) ** 2 + tau ** 2)
        assert guidance_weight(tau, 1e9) == pytest.approx((1 - tau) / tau / r2)
        assert guidance_weight(tau, 2.0) == pytest.approx(min(2.0, (1 - tau) / tau / r2))
    assert guidance_weight(0.0, 5.0) == 5.0 and guidance_weight(1.0, 5.0) == 0.0


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="prefix_attention_schedule"):
        RTCConfig(prefix_attention_schedule="cosine")
    with pytest.raises(ValueError, match="max_guidance_weight"):
        RTCConfig(max_guidance_weight=0)
    with pytest.raises(ValueError, match="guidance_gradient"):
        RTCConfig(guidance_gradient="adjoint")


# ----- against LeRobot's RTCProcessor ----------------------------------------------------------
pytest.importorskip("lerobot")
require_lerobot()  # lerobot.policies imports without its optional groot extra
lerobot_rtc = pytest.importorskip("lerobot.policies.rtc.modeling_rtc")
from lerobot.configs.types import RTCAttentionSchedule  # noqa: E402
from lerobot.policies.rtc.configuration_rtc import RTCConfig as LeRobotRTCConfig  # noqa: E402

LEROBOT_SCHEDULES = {"exp": RTCAttentionSchedule.EXP, "linear": RTCAttentionSchedule.LINEAR,
                     "ones": RTCAttentionSchedule.ONES, "zeros": RTCAttentionSchedule.ZEROS}


def _lerobot(schedule: str, beta: float, s: int):
    return lerobot_rtc.RTCProcessor(LeRobotRTCConfig(
        enabled=True, prefix_attention_schedule=LEROBOT_SCHEDULES[schedule],
        max_guidance_weight=beta, execution_horizon=s))


@pytest.mark.parametrize("schedule", sorted(LEROBOT_SCHEDULES))
def test_prefix_weights_equal_lerobots(schedule):
    lr = _lerobot(schedule, 10.0, 8)
    for d, end, H in [(0, 5, 8), (2, 6, 8), (3, 3, 8), (4, 12, 16), (2, 8, 8), (5, 3, 8)]:
        np.testing.assert_allclose(prefix_weights(schedule, d, end, H).numpy(),
                                   lr.get_prefix_weights(d, end, H).numpy(), atol=1e-6,
                                   err_msg=f"d={d} end={end} H={H}")


class _Denoiser(torch.nn.Module):
    """Per-sample nonlinear velocity field (B, H, D) -> (B, H, D): an MLP and attention over
    the chunk's own points (never across the batch)."""

    def __init__(self, D: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = torch.nn.Linear(D, 16)
        self.att = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = torch.nn.Linear(16, D)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + self.att(h, h, h, need_weights=False)[0]
        return self.out(h)


def _inputs(B=2, H=8, D=3, P=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, D, generator=g), torch.randn(B, P, D, generator=g)


@pytest.mark.parametrize("schedule", ["exp", "linear"])
@pytest.mark.parametrize("time", [1.0, 0.7, 0.3, 0.05])
def test_identity_gradient_equals_lerobots_denoise_step(schedule, time):
    """LeRobot 0.4 evaluates the velocity before x_t requires grad, so its correction is the
    weighted error itself (identity Jacobian): guidance_gradient='identity' is that."""
    net = _Denoiser()
    x, prefix = _inputs()
    ours = RTCProcessor(RTCConfig(prefix_attention_schedule=schedule, max_guidance_weight=5.0,
                                  execution_horizon=5, guidance_gradient="identity"))
    with torch.no_grad():
        a = ours.flow_velocity(x, net, prefix, 2, time)
        b = _lerobot(schedule, 5.0, 5).denoise_step(x, prefix, 2, time, net)
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=2e-5)
    with torch.no_grad():  # unbatched inputs too
        a1 = ours.flow_velocity(x[0], net, prefix[0], 2, time)
        b1 = _lerobot(schedule, 5.0, 5).denoise_step(x[0], prefix[0], 2, time, net)
    np.testing.assert_allclose(a1.numpy(), b1.detach().numpy(), atol=2e-5)


def test_vjp_equals_lerobot_when_the_velocity_ignores_x_and_the_jacobian_otherwise():
    x, prefix = _inputs()
    const = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    ours = RTCProcessor(RTCConfig(max_guidance_weight=5.0, execution_horizon=6,
                                  guidance_gradient="vjp"))
    a = ours.flow_velocity(x, lambda _: const, prefix, 3, 0.6)
    b = _lerobot("exp", 5.0, 6).denoise_step(x, prefix, 3, 0.6, lambda _: const)
    np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=2e-5)

    # With a real denoiser: v - w * J^T e, J = d(x - t v)/dx from the full Jacobian.
    net, t, d = _Denoiser(), 0.6, 3
    w = prefix_weights("exp", d, 6, 8).view(1, 8, 1)
    guided = ours.flow_velocity(x, net, prefix, d, t)
    for b_i in range(x.shape[0]):
        xi = x[b_i:b_i + 1]
        J = torch.autograd.functional.jacobian(lambda z: z - t * net(z), xi)  # (1,H,D,1,H,D)
        with torch.no_grad():
            x0 = xi - t * net(xi)
            pad = torch.zeros_like(xi)
            pad[:, :6] = prefix[b_i:b_i + 1]
            e = (pad - x0) * w
            g = torch.einsum("bhd,bhdcke->cke", e, J)
            want = net(xi) - guidance_weight(1 - t, 5.0) * g
        np.testing.assert_allclose(guided[b_i].detach().numpy(), want[0].numpy(), atol=2e-5)
    assert not np.allclose(guided.detach().numpy(),
                           _lerobot("exp", 5.0, 6).denoise_step(x, prefix, d, t, net)
                           .detach().numpy(), atol=1e-3)  # the Jacobian matters here


@pytest.mark.parametrize("gradient", ["vjp", "identity"])
def test_guidance_is_batch_independent(gradient):
    net = _Denoiser()
    x, prefix = _inputs(B=3)
    rtc = RTCProcessor(RTCConfig(execution_horizon=5, guidance_gradient=gradient))
    batched = rtc.flow_velocity(x, net, prefix, 2, 0.5)
    for b in range(3):
        alone = rtc.flow_velocity(x[b:b + 1], net, prefix[b:b + 1], 2, 0.5)
        np.testing.assert_allclose(batched[b].detach().numpy(), alone[0].detach().numpy(),
                                   atol=1e-5)


def test_flow_equivalent_maps_a_diffusion_sample_onto_the_flow_path():
    a, eps = torch.randn(4, 3), torch.randn(4, 3)
    for abar in (0.01, 0.5, 0.95):
        x = math.sqrt(abar) * a + math.sqrt(1 - abar) * eps
        s, tau = flow_equivalent(abar)
        np.testing.assert_allclose((x / s).numpy(), (tau * a + (1 - tau) * eps).numpy(),
                                   atol=1e-6)


# ----- the policy: committed prefix reproduced ------------------------------------------------
def _sim_obs():
    pytest.importorskip("mujoco")
    from ate_ros.core.sim.env import SimEnv

    env = SimEnv("sim_arm6", "reach", seed=0)
    try:
        env.reset(seed=3, render=False)
        return env.observe(render=False).to_policy(env.embodiment)
    finally:
        env.close()


@pytest.mark.skipif(not (LOWDIM / "model.safetensors").exists(), reason="no low-dim policy")
def test_hard_weighted_chunk_reproduces_the_committed_prefix():
    """The pre-trained low-dim (diffusion) policy: another seed's chunk differs from a committed
    one by ~0.05-0.1 rad; hard-weighted RTC (schedule 'zeros') brings the first d within 0.02
    rad, and the default schedule keeps the soft region nearer than unguided sampling."""
    from ate_ros.core.steer.policies import load_policy

    pol = load_policy(LOWDIM)
    obs = _sim_obs()
    m = obs.mask
    committed = pol.predict_chunk(obs, seed=1)
    free = pol.predict_chunk(obs, seed=2)
    d = 4
    assert np.abs(free - committed)[:d, m].max() > 0.04
    pol.set_rtc(RTCConfig(prefix_attention_schedule="zeros", max_guidance_weight=100.0))
    hard = pol.predict_chunk(obs, seed=2, prefix=committed[:12], inference_delay=d)
    assert np.abs(hard - committed)[:d, m].max() < 0.02
    pol.set_rtc(RTCConfig(execution_horizon=8, max_guidance_weight=5.0))
    soft = pol.predict_chunk(obs, seed=2, prefix=committed[:12], inference_delay=d)
    assert np.abs(soft - committed)[:d, m].max() < 0.03
    assert np.abs(soft - committed)[d:8, m].mean() < np.abs(free - committed)[d:8, m].mean()
    # No prefix: the plain sampler (the same chunk as before RTC existed).
    np.testing.assert_array_equal(pol.predict_chunk(obs, seed=2), free)


def test_tiny_flow_policy_hard_weighted_prefix():
    """A randomly initialised flow-head policy (vjp guidance through its decoder): the first d
    points land on the committed ones; the relative-action reference is handled."""
    from ate_ros.core.policy_contract import PolicyObservation
    from ate_ros.core.steer.policies import VLAConfig, VLAPolicy

    torch.manual_seed(0)
    pol = VLAPolicy(VLAConfig(chunk_size=8, camera_names=[], env_state_dim=4, d_model=32,
                              n_heads=4, n_layers=2, ffn_dim=64, text_encoder="hash",
                              text_dim=16, head="flow", action_mode="relative",
                              num_inference_steps=10)).eval()
    mask = np.zeros(128, bool)
    mask[:3] = True
    q = np.zeros(128, np.float32)
    q[:3] = [0.3, -0.2, 0.5]
    obs = PolicyObservation(images={}, qpos=q, mask=mask, instruction="reach",
                            env_state=np.zeros(4, np.float32))
    committed = pol.predict_chunk(obs, seed=1)
    free = pol.predict_chunk(obs, seed=2)
    pol.set_rtc(RTCConfig(prefix_attention_schedule="zeros", max_guidance_weight=100.0))
    hard = pol.predict_chunk(obs, seed=2, prefix=committed[:6], inference_delay=3)
    err_free = np.abs(free - committed)[:3, mask].max()
    err_hard = np.abs(hard - committed)[:3, mask].max()
    assert err_hard < 0.05 * err_free, (err_hard, err_free)
    assert (hard[:, ~mask] == 0).all()


def test_latency_estimate_in_control_periods():
    est = LatencyEstimate(period=0.1, quantile=0.9, window=10, initial=2)
    assert est.periods() == 2
    for s in [0.05] * 9 + [0.31]:
        est.add(s)
    assert est.periods() == math.ceil(np.quantile([0.05] * 9 + [0.31], 0.9) / 0.1)
    for s in [0.12] * 10:  # the window forgets the old samples
        est.add(s)
    assert est.periods() == 2
    est.add(float("nan"))
    assert len(est) == 10


def test_rviz_colours_of_committed_executing_and_incoming():
    """The RTC paths are drawn in three distinct flat colours and reach the MarkerArray."""
    from ate_ros.core.embodiment import Embodiment, JointSpec
    from ate_ros.core.viz.chunk_paths import (
        NS_COMMITTED,
        NS_EXECUTING,
        NS_INCOMING,
        RTC_RGB,
        ChunkHistory,
    )
    from ate_ros.core.viz.ee_kinematics import load_kinematics

    emb = Embodiment(name="toy2", joints=[JointSpec(name=f"j{i}", slot=i, lower=-2, upper=2)
                                          for i in range(2)])
    hist = ChunkHistory(load_kinematics(emb, "joints"))
    plan = np.stack([np.linspace(0, 1, 8), np.zeros(8)], 1)
    new = plan + 0.05
    hist.add_chunk(new)
    hist.set_rtc(plan[:3], plan, new[3:])
    lines = {p.ns: p for p in hist.polylines()}
    assert {NS_COMMITTED, NS_EXECUTING, NS_INCOMING} <= set(lines)
    assert len(lines[NS_COMMITTED].points) == 3 and len(lines[NS_INCOMING].points) == 5
    colours = {ns: tuple(lines[ns].colors[0, :3]) for ns in RTC_RGB}
    assert len(set(colours.values())) == 3
    assert all((lines[ns].colors[:, :3] == RTC_RGB[ns]).all() for ns in RTC_RGB)
    hist.set_rtc(np.zeros((0, 2)), np.zeros((0, 2)), new)  # no plan yet: incoming only
    assert {p.ns for p in hist.polylines()} & set(RTC_RGB) == {NS_INCOMING}
    pytest.importorskip("visualization_msgs")
    from ate_ros.nodes.visualization import polylines_to_markers

    markers = polylines_to_markers(hist.polylines(), "base")
    assert NS_INCOMING in {m.ns for m in markers.markers}
