"""Instruction-steered keypoint maps (``VLAConfig.instruction_keypoints``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.tiny_policy import tiny_vla_config

from ate_ros.core.steer.policies import VLAConfig, VLAPolicy
from ate_ros.core.steer.policies.modeling_vla import (
    ACTION,
    OBS_IMAGES,
    OBS_MASK,
    OBS_STATE,
    OBS_TEXT,
    ImageEncoder,
)


def _scenes(n: int, g: torch.Generator):
    """A red and a blue 3x3 square at random places; ``which`` names one; target: its (y, x)."""
    pos = torch.randint(1, 14, (n, 2, 2), generator=g)
    ys = torch.arange(16).view(1, 1, 16, 1)
    xs = torch.arange(16).view(1, 1, 1, 16)
    near = ((ys - pos[..., :1, None]).abs() <= 1) & ((xs - pos[..., 1:, None]).abs() <= 1)
    img = torch.zeros(n, 3, 16, 16)
    img[:, 0], img[:, 2] = near[:, 0].float(), near[:, 1].float()
    which = torch.randint(0, 2, (n,), generator=g)
    return img, which, pos[torch.arange(n), which].float() / 7.5 - 1.0


def _locate_named_square(steered: bool, steps: int = 150) -> float:
    torch.manual_seed(0)
    enc = ImageEncoder([8, 16], 16, grid=1, pool="keypoints")
    query = torch.nn.Linear(2, enc.channels)
    head = torch.nn.Linear(16 + 2, 2)
    opt = torch.optim.Adam([*enc.parameters(), *query.parameters(), *head.parameters()], lr=1e-2)

    def predict(img, which):
        named = F.one_hot(which, 2).float()
        delta = query(named).view(-1, 1, enc.channels) if steered else None
        return head(torch.cat([enc(img, delta).flatten(1), named], 1))

    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        img, which, target = _scenes(64, g)
        loss = (predict(img, which) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    img, which, target = _scenes(256, torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float((predict(img, which) - target).pow(2).mean())


def test_steered_map_locates_the_named_object():
    """One attention map, two objects: only a map whose query the instruction moves can find
    the named one (the head also sees the instruction in both variants)."""
    steered, plain = _locate_named_square(True), _locate_named_square(False)
    assert steered < 0.01 and plain > 5 * steered, (steered, plain)


def _cfg(**kw):
    return tiny_vla_config(**{"n_layers": 1, "num_inference_steps": 3, "vision_grid": 2, **kw})


def _batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, 128, dtype=torch.bool)
    mask[:, :3] = True
    return {OBS_IMAGES: torch.randint(0, 255, (B, 1, 16, 16, 3), generator=g,
                                      dtype=torch.uint8),
            OBS_STATE: torch.randn(B, 128, generator=g) * mask, OBS_MASK: mask,
            OBS_TEXT: torch.randn(B, 16, generator=g),
            ACTION: torch.randn(B, 4, 128, generator=g) * mask.unsqueeze(1)}


def test_starts_as_the_plain_encoder_and_learns_the_query():
    torch.manual_seed(0)
    steered = VLAPolicy(_cfg(instruction_keypoints=True))
    torch.manual_seed(0)
    plain = VLAPolicy(_cfg())
    # Same weights apart from the zero-initialised query: same memory tokens.
    missing = plain.load_state_dict(steered.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {"keypoint_query.weight", "keypoint_query.bias"}
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(steered.encode_observation(batch),
                                   plain.encode_observation(batch), rtol=0, atol=0)
    loss, _ = steered(batch)
    loss.backward()
    assert steered.keypoint_query.weight.grad.abs().sum() > 0
    with torch.no_grad():
        steered.keypoint_query.weight.normal_()
        other = dict(batch, **{OBS_TEXT: torch.randn(4, 16)})
        assert not torch.allclose(steered.encode_observation(batch),
                                  steered.encode_observation(other))


def test_config_needs_keypoint_pooling():
    with pytest.raises(ValueError, match="instruction_keypoints needs vision_pool"):
        VLAConfig(vision_pool="avg", instruction_keypoints=True)
    assert VLAConfig.from_dict({k: v for k, v in VLAConfig().to_dict().items()
                                if k != "instruction_keypoints"}).instruction_keypoints is False


def test_traced_inference_follows_the_instruction():
    from ate_ros.core.policy_contract import PolicyObservation

    torch.manual_seed(1)
    m = VLAPolicy(_cfg(instruction_keypoints=True)).eval()
    with torch.no_grad():
        m.keypoint_query.weight.normal_()
    mask = torch.zeros(128, dtype=torch.bool)
    mask[:3] = True
    img = torch.randint(0, 255, (16, 16, 3), generator=torch.Generator().manual_seed(0),
                        dtype=torch.uint8).numpy()

    def chunk(text):
        obs = PolicyObservation(images={"front": img}, qpos=torch.zeros(128).numpy(),
                                mask=mask.numpy(), instruction=text)
        return m.predict_chunk(obs, seed=0)

    fast_a, fast_b = chunk("touch the red block"), chunk("touch the blue block")
    assert any(k[0] == "encoder" for k in m.inference.cache)
    m.fast_inference = False
    torch.testing.assert_close(torch.from_numpy(chunk("touch the red block")),
                               torch.from_numpy(fast_a), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(torch.from_numpy(fast_a), torch.from_numpy(fast_b))
