"""Training-time real-time chunking (``VLAConfig.rtc_train_max_delay``): in training the first d
~ U(0, d_max) points of a chunk are given clean, at noise fraction 0, and left out of the loss;
a policy trained so samples a committed prefix by the same conditioning (no guidance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.steer.policies import VLAConfig, VLAPolicy

H = 8


def _policy(head: str, d_max: int = 4) -> VLAPolicy:
    torch.manual_seed(0)
    return VLAPolicy(VLAConfig(chunk_size=H, camera_names=[], env_state_dim=4, d_model=32,
                               n_heads=4, n_layers=2, ffn_dim=64, text_encoder="hash",
                               text_dim=16, head=head, action_mode="relative",
                               num_inference_steps=6, rtc_train_max_delay=d_max)).eval()


def _obs() -> PolicyObservation:
    mask = np.zeros(128, bool)
    mask[:3] = True
    q = np.zeros(128, np.float32)
    q[:3] = [0.3, -0.2, 0.5]
    return PolicyObservation(images={}, qpos=q, mask=mask, instruction="reach",
                             env_state=np.zeros(4, np.float32))


def test_clean_prefix_gives_the_first_d_points_clean_and_masks_them_from_the_loss():
    pol = _policy("diffusion", d_max=5)
    B, D = 256, 128
    g = torch.Generator().manual_seed(0)
    x, a0 = torch.randn(B, H, D, generator=g), torch.randn(B, H, D, generator=g)
    frac = torch.rand(B, generator=g)
    mask = torch.zeros(B, D, dtype=torch.bool)
    mask[:, :3] = True
    x2, temb, keep = pol._clean_prefix(x, a0, frac, mask, torch.Generator().manual_seed(1))
    assert temb.shape == (B, H, 32) and keep.shape == (B, H, D)
    d = (keep[:, :, 0] == 0).sum(1)  # clean points per sample: a prefix
    assert set(d.tolist()) == set(range(6))  # U(0, d_max), both ends reached in 256 draws
    clean_t, noisy_t = pol.time_embedding(torch.zeros(1)), pol.time_embedding(frac)
    for b in range(8):
        k = int(d[b])
        assert (keep[b, :k] == 0).all() and (keep[b, k:] == mask[b].float()).all()
        torch.testing.assert_close(x2[b, :k], a0[b, :k])
        torch.testing.assert_close(x2[b, k:], x[b, k:])
        torch.testing.assert_close(temb[b, :k], clean_t[0].expand(k, -1))
        torch.testing.assert_close(temb[b, k:], noisy_t[b].expand(H - k, -1))


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_conditioned_sampling_keeps_the_committed_points(head):
    pol, obs = _policy(head), _obs()
    committed = pol.predict_chunk(obs, seed=1)
    free = pol.predict_chunk(obs, seed=2)
    for d in (0, 2, 4):
        out = pol.predict_chunk(obs, seed=2, prefix=committed[:6], inference_delay=d)
        np.testing.assert_allclose(out[:d, obs.mask], committed[:d, obs.mask], atol=1e-5)
        assert (out[:, ~obs.mask] == 0).all()
        if d:
            assert not np.allclose(out[d:, obs.mask], free[d:, obs.mask])  # it conditions
        else:  # nothing given: the plain sampler's chunk (the step-by-step loop, same maths)
            np.testing.assert_allclose(out, free, atol=1e-5)
    # Without a prefix the plain sampler runs: the same chunk as the same weights untrained
    # for RTC.
    plain = VLAPolicy(VLAConfig(**{**pol.config.__dict__, "rtc_train_max_delay": 0})).eval()
    plain.load_state_dict(pol.state_dict())
    np.testing.assert_allclose(plain.predict_chunk(obs, seed=2), free, atol=1e-6)


def test_training_loss_runs_and_delay_is_validated():
    pol = _policy("flow", d_max=3).train()
    B = 4
    mask = torch.zeros(B, 128, dtype=torch.bool)
    mask[:, :3] = True
    batch = pol.observation_to_batch(_obs())
    batch = {k: (v.expand(B, *v.shape[1:]) if torch.is_tensor(v) else v)
             for k, v in batch.items()}
    batch["action"] = torch.randn(B, H, 128) * mask.unsqueeze(1)
    batch["observation.mask"] = mask
    loss, logs = pol(batch, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and logs["loss"] > 0
    with pytest.raises(ValueError, match="rtc_train_max_delay"):
        VLAConfig(chunk_size=H, rtc_train_max_delay=H)
