"""The compact VLA policy: overfitting, save/load round trip, the ChunkPolicy contract, data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from support.overfit import losses_before_after
from support.tiny_policy import hash_embed, tiny_vla_config, toy_embodiment, toy_policy_dataset

from ate_ros.core.data.policy_dataset import PolicyDataset, PolicyDatasetError, write_toy_dataset
from ate_ros.core.policy_contract import ChunkPolicy, PolicyObservation
from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance
from ate_ros.core.steer.policies import InferenceGuidance, VLAPolicy, load_policy
from ate_ros.core.training.files import CheckpointError


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return write_toy_dataset(root, toy_embodiment(), episodes=2, length=6, image_size=20,
                             val_episodes=1)


@pytest.fixture(scope="module")
def toy_ds(toy_data):
    return toy_policy_dataset([toy_data])


def _obs(seed=0, mask_slots=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[list(mask_slots)] = True
    q = np.zeros(128, np.float32)
    q[mask] = rng.uniform(-1, 1, mask.sum())
    return PolicyObservation(images={"front": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)},
                             qpos=q, mask=mask, instruction="reach the target")


@pytest.mark.parametrize("head,pred,steps",
                         [("diffusion", "sample", 80), ("flow", "epsilon", 150)])
def test_overfits_tiny_dataset(toy_ds, head, pred, steps):
    torch.manual_seed(0)
    m = VLAPolicy(tiny_vla_config(head=head, prediction_type=pred, d_model=64, ffn_dim=128))
    m.set_norm_stats(*toy_ds.fit_stats())
    batch = toy_ds.get_batch(np.arange(len(toy_ds)))
    before, after = losses_before_after(m, batch, steps)
    assert after < before / 10, (before, after)


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_save_load_roundtrip_bit_for_bit(tmp_path, toy_ds, head):
    torch.manual_seed(3)
    m = VLAPolicy(tiny_vla_config(head=head, sampler="ddpm"))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.eval()
    obs = _obs()
    a = m.predict_chunk(obs, seed=7)
    m.save_pretrained(tmp_path / "p")
    m2 = load_policy(tmp_path / "p")
    b = m2.predict_chunk(obs, seed=7)
    assert np.array_equal(a, b)
    assert m2.model_id == m.model_id
    assert not np.array_equal(a, m2.predict_chunk(obs, seed=8))
    assert np.array_equal(b, m2.predict_chunk(obs, seed=7))


@pytest.mark.parametrize("head,pool", [("diffusion", "avg"), ("flow", "keypoints"),
                                       ("diffusion", "max")])
def test_traced_inference_matches_eager_and_follows_weight_updates(toy_ds, head, pool):
    torch.manual_seed(5)
    m = VLAPolicy(tiny_vla_config(head=head, vision_pool=pool, vision_grid=2))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.eval()
    obs = _obs()
    fast = m.predict_chunk(obs, seed=2)
    assert m.inference.cache, "the eval-mode fast path should have traced the decoder"
    m.fast_inference = False
    eager = m.predict_chunk(obs, seed=2)
    np.testing.assert_allclose(fast, eager, rtol=1e-5, atol=1e-6)
    m.fast_inference = True
    assert any(k[0] == "encoder" for k in m.inference.cache), "the encoder is traced too"
    with torch.no_grad():  # an in-place update (optimiser step, EMA copy) must be seen
        m.action_out.bias.add_(0.5)
        m.state_proj[0].bias.add_(0.3)  # (encoder side)
    fast2 = m.predict_chunk(obs, seed=2)
    m.fast_inference = False
    np.testing.assert_allclose(fast2, m.predict_chunk(obs, seed=2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fast2, fast)
    m.fast_inference = True
    twin = copy.deepcopy(m)  # e.g. the EMA model: its own trace, its own weights
    assert twin.inference.model is twin and not twin.inference.cache
    with torch.no_grad():
        twin.action_out.bias.sub_(0.5)
        twin.state_proj[0].bias.sub_(0.3)
    np.testing.assert_allclose(twin.predict_chunk(obs, seed=2), fast, rtol=1e-5, atol=1e-6)
    m.to(torch.float64).to(torch.float32)
    assert not m.inference.cache, "moving the module must drop traces bound to old storage"


@pytest.mark.parametrize("head,pred,clip", [("diffusion", "epsilon", 0.5),
                                            ("diffusion", "sample", 0.5),
                                            ("diffusion", "epsilon", 0.0),
                                            ("flow", "epsilon", 0.0)])
def test_fused_traced_sampler_matches_step_by_step_sampler(toy_ds, head, pred, clip):
    from ate_ros.core.steer.policies.modeling_vla import OBS_MASK

    torch.manual_seed(11)
    m = VLAPolicy(tiny_vla_config(head=head, prediction_type=pred, clip_sample=clip))
    m.set_norm_stats(*toy_ds.fit_stats())
    m.eval()
    with torch.no_grad():
        m.action_out.weight.mul_(10.0)  # large model outputs, so that the clip is active
    batch = toy_ds.get_batch(np.arange(3))
    batch[OBS_MASK] = batch[OBS_MASK].clone()
    batch[OBS_MASK][1, 1] = False  # per-sample masks
    keep = batch[OBS_MASK].unsqueeze(1).expand(-1, 4, -1)
    for steps in (1, 3, 5):
        fast = m.sample(batch, steps, torch.Generator().manual_seed(steps))
        m.fast_inference = False
        eager = m.sample(batch, steps, torch.Generator().manual_seed(steps))
        m.fast_inference = True
        torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-6)
        assert torch.all(fast[~keep] == 0)
        if clip:  # the last DDIM step returns the clipped x0 (normalised)
            top = m.normalize_action(fast)[keep].abs().max()
            assert abs(float(top) - clip) < 1e-5
    assert sorted(k[0] for k in m.inference.cache) == ["encoder", "sampler"], \
        "one fused trace serves every step count"
    if head == "diffusion":  # DDPM (fresh noise per step) keeps the step-by-step update
        m.config.sampler = "ddpm"
        m.sample(batch, 3, torch.Generator().manual_seed(0))
        assert sorted(k[0] for k in m.inference.cache) == ["decoder", "encoder", "sampler"]


def test_loading_refuses_pickles_and_mismatches(tmp_path):
    m = VLAPolicy(tiny_vla_config())
    m.save_pretrained(tmp_path / "p")
    torch.save(m.state_dict(), tmp_path / "p" / "model.pt")
    (tmp_path / "p" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        load_policy(tmp_path / "p")
    m.save_pretrained(tmp_path / "q")
    VLAPolicy(tiny_vla_config(d_model=64)).save_pretrained(tmp_path / "r")
    (tmp_path / "r" / "model.safetensors").replace(tmp_path / "q" / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not match"):
        load_policy(tmp_path / "q")
    with pytest.raises(CheckpointError):
        load_policy(tmp_path / "missing")


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_chunk_policy_contract(head):
    m = VLAPolicy(tiny_vla_config(head=head)).eval()
    assert isinstance(m, ChunkPolicy)
    obs = _obs(mask_slots=(3, 10, 50))
    c = m.predict_chunk(obs, num_steps=3, seed=0)
    assert c.shape == (4, 128) and c.dtype == np.float32
    assert np.all(c[:, ~obs.mask] == 0) and np.all(np.isfinite(c))
    assert m.camera_names == ["front"] and m.chunk_size == 4
    bad = PolicyObservation(images={"side": obs.images["front"]}, qpos=obs.qpos, mask=obs.mask)
    with pytest.raises(ValueError, match="cameras"):
        m.predict_chunk(bad)


class _Enc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4 * 128, 3)

    def forward(self, x):
        return self.lin(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("head", ["diffusion", "flow"])
def test_inference_guidance_is_optional_and_scaled(head):
    m = VLAPolicy(tiny_vla_config(head=head)).eval()
    obs = _obs()
    plain = m.predict_chunk(obs, seed=1)
    m.set_inference_guidance(InferenceGuidance(encoder=_Enc(), mean=torch.ones(3) * 5,
                                               precision=torch.eye(3), scale=1.0, clamp=0.5))
    guided = m.predict_chunk(obs, seed=1)
    assert not np.array_equal(plain, guided) and np.all(guided[:, ~obs.mask] == 0)
    assert np.array_equal(m.predict_chunk(obs, seed=1, guidance_scale=0.0), plain)
    m.set_inference_guidance(None)
    assert np.array_equal(m.predict_chunk(obs, seed=1), plain)


def test_guidance_off_gives_plain_training_loss(toy_ds):
    m = VLAPolicy(tiny_vla_config())
    m.set_norm_stats(*toy_ds.fit_stats())
    batch = toy_ds.get_batch(np.arange(6))
    off = LatentGuidance(_Enc(), m.parameterization, GuidanceConfig(enabled=False))
    l_plain, _ = m(batch, generator=torch.Generator().manual_seed(0))
    l_off, _ = m(batch, guidance=off, generator=torch.Generator().manual_seed(0))
    assert torch.equal(l_plain, l_off)
    on = LatentGuidance(_Enc(), m.parameterization, GuidanceConfig(scale=2.0, direction="paper"),
                        to_encoder=m.unnormalize_action)
    l_on, logs = m(batch, guidance=on, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(l_plain, l_on) and logs["guidance/applied"] == 6


def test_dataset_chunks_and_errors(toy_data, tmp_path):
    ds = toy_policy_dataset([toy_data])
    assert len(ds) == 12
    b = ds.get_batch([5])  # last frame of episode 0: the chunk repeats its last action
    assert torch.equal(b["action"][0, 0], b["action"][0, 3])
    assert b["observation.images"].shape == (1, 1, 16, 16, 3)
    with pytest.raises(PolicyDatasetError, match="recorded with embodiment"):
        PolicyDataset([toy_data], "train", 4, ["front"], 16, [toy_embodiment("other")], hash_embed)
    with pytest.raises(PolicyDatasetError, match="missing 'train/'"):
        PolicyDataset([tmp_path], "train", 4, ["front"], 16, [toy_embodiment()], hash_embed)
    (tmp_path / "train").mkdir()
    with pytest.raises(PolicyDatasetError, match="no episode files"):
        PolicyDataset([tmp_path], "train", 4, ["front"], 16, [toy_embodiment()], hash_embed)


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="divisible"):
        tiny_vla_config(d_model=30)
    with pytest.raises(ValueError, match="head"):
        tiny_vla_config(head="gan")
    with pytest.raises(ValueError, match="num_inference_steps"):
        tiny_vla_config(num_inference_steps=500)


def test_state_dropout_hides_state_in_training_only(toy_ds):
    from ate_ros.core.steer.policies.modeling_vla import OBS_STATE

    torch.manual_seed(0)
    m = VLAPolicy(tiny_vla_config(state_dropout=0.5))
    m.set_norm_stats(*toy_ds.fit_stats())
    batch = toy_ds.get_batch(np.arange(4))
    other = {**batch, OBS_STATE: batch[OBS_STATE] + 1.0}
    hidden = torch.zeros(4, 1)
    torch.testing.assert_close(m.encode_observation(batch, hidden),
                               m.encode_observation(other, hidden))
    assert not torch.allclose(m.encode_observation(batch), m.encode_observation(other))
    with pytest.raises(ValueError, match="state_dropout"):
        tiny_vla_config(state_dropout=1.0)
