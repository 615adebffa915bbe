"""Real-time chunking of a LeRobot checkpoint runs LeRobot's own RTC: a tiny SmolVLA made here
(random weights, a local SmolVLM backbone folder, nothing downloaded), loaded through the policy
factory, inpaints toward the committed prefix exactly as LeRobot's ``predict_action_chunk(...,
inference_delay=, prev_chunk_left_over=)`` does on the normalised prefix; policies without RTC
in LeRobot are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")
pytest.importorskip("num2words")  # transformers' SmolVLM processor needs it

from ate_ros.core.deploy.policy_factory import load_run_policy  # noqa: E402
from ate_ros.core.embodiment import UNIFIED_DIM, CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.policy_contract import (  # noqa: E402
    PolicyFeatureError,
    PolicyObservation,
    supports_rtc,
)
from ate_ros.core.steer.rtc import RTCConfig  # noqa: E402

EMB = Embodiment(name="lr3", joints=[JointSpec(name=f"j{i}", slot=s, lower=-1.0, upper=1.0)
                                     for i, s in enumerate([2, 5, 9])],
                 control_rate_hz=10.0, cameras=[CameraSpec(name="front", width=24, height=24)])
H, DELAY = 12, 3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from support.lerobot_fixtures import tiny_diffusion_checkpoint, tiny_smolvla_checkpoint

    root = tmp_path_factory.mktemp("lerobot_rtc")
    return {"smolvla": tiny_smolvla_checkpoint(root / "smolvla", EMB, chunk_size=H),
            "diffusion": tiny_diffusion_checkpoint(root / "dp", EMB)}


def _obs(stamp: float = 0.0) -> PolicyObservation:
    q = np.zeros(UNIFIED_DIM, np.float32)
    q[EMB.slots] = [0.2, -0.3, 0.1]
    img = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    return PolicyObservation(images={"front": img}, qpos=q, mask=EMB.mask,
                             instruction="reach", stamp=stamp)


def _prefix(n: int = 8) -> np.ndarray:
    """(n, 128) committed joint targets: a smooth ramp inside the limits."""
    out = np.zeros((n, UNIFIED_DIM), np.float32)
    t = np.linspace(0.0, 1.0, n)[:, None]
    out[:, EMB.slots] = 0.5 * t + np.array([-0.4, 0.3, 0.0])
    return out


def test_smolvla_chunk_is_lerobots_rtc_on_the_normalised_prefix(checkpoints):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.rtc.configuration_rtc import RTCConfig as LeRobotRTCConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    ckpt = checkpoints["smolvla"]
    ours = load_run_policy(f"lerobot:{ckpt}", EMB)
    assert ours.model_id == "lerobot:smolvla" and ours.chunk_size == H
    assert ours.takes_prefix and supports_rtc(ours)
    ours.set_rtc(RTCConfig(prefix_attention_schedule="linear", max_guidance_weight=4.0,
                           execution_horizon=6))
    rtc = ours.policy.config.rtc_config
    assert (rtc.enabled, rtc.prefix_attention_schedule.value, rtc.max_guidance_weight,
            rtc.execution_horizon) == (True, "LINEAR", 4.0, 6)
    assert ours.policy.model.rtc_processor.rtc_config is rtc  # the sampler's processor

    prefix = _prefix()
    chunk = ours.predict_chunk(_obs(), seed=3, prefix=prefix, inference_delay=DELAY)
    assert chunk.shape == (H, UNIFIED_DIM) and chunk.dtype == np.float32
    assert not chunk[:, [s for s in range(UNIFIED_DIM) if s not in EMB.slots]].any()

    # LeRobot alone: the same checkpoint and seed, the prefix normalised by hand (mean-std).
    ref = SmolVLAPolicy.from_pretrained(str(ckpt)).eval()
    ref.config.rtc_config = LeRobotRTCConfig(enabled=True, prefix_attention_schedule=rtc.
                                             prefix_attention_schedule, max_guidance_weight=4.0,
                                             execution_horizon=6)
    ref.init_rtc_processor()
    pre, post = make_pre_post_processors(ref.config, pretrained_path=str(ckpt))
    lo, hi = torch.tensor(EMB.lower), torch.tensor(EMB.upper)
    left = (torch.from_numpy(prefix[:, EMB.slots]) - (lo + hi) / 2) / ((hi - lo) / 4)
    frame = ours.frame(_obs())
    with torch.random.fork_rng():
        torch.manual_seed(3)
        want = ref.predict_action_chunk(pre(frame), inference_delay=DELAY,
                                        prev_chunk_left_over=left.unsqueeze(0).float())
    want = post(want)[0].numpy()
    np.testing.assert_allclose(chunk[:, EMB.slots], want, atol=1e-5)

    # Without the prefix the same seed gives another chunk; its first points are further from
    # the committed ones than the inpainted chunk's.
    plain = ours.predict_chunk(_obs(), seed=3)
    err_rtc = np.abs(chunk[:DELAY, EMB.slots] - prefix[:DELAY, EMB.slots]).mean()
    err_plain = np.abs(plain[:DELAY, EMB.slots] - prefix[:DELAY, EMB.slots]).mean()
    assert err_rtc < 0.5 * err_plain, (err_rtc, err_plain)


def test_prefix_turns_lerobots_rtc_on_with_the_defaults(checkpoints):
    pol = load_run_policy(f"lerobot:{checkpoints['smolvla']}", EMB)
    assert not pol._rtc_enabled()  # saved without RTC
    pol.predict_chunk(_obs(), seed=0, prefix=_prefix(), inference_delay=2)
    rtc, ours = pol.policy.config.rtc_config, RTCConfig()
    assert rtc.enabled and rtc.execution_horizon == ours.execution_horizon
    assert rtc.prefix_attention_schedule.value == ours.prefix_attention_schedule.upper()
    with pytest.raises(PolicyFeatureError, match="identity"):
        pol.set_rtc(RTCConfig(guidance_gradient="vjp"))


def test_policy_without_lerobot_rtc_is_refused(checkpoints):
    pol = load_run_policy(f"lerobot:{checkpoints['diffusion']}", EMB)
    assert not pol.takes_prefix and not supports_rtc(pol)
    with pytest.raises(PolicyFeatureError, match="pi0, pi0.5 and SmolVLA"):
        pol.set_rtc(RTCConfig())
    with pytest.raises(PolicyFeatureError, match="not available"):
        pol.predict_chunk(_obs(), prefix=_prefix(), inference_delay=1)
