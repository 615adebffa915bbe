"""A LeRobot DiffusionPolicy checkpoint behind our ChunkPolicy contract: the chunk it predicts
from our Observation is LeRobot's own select_action output, written into the embodiment's slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")

from ate_ros.core.embodiment import UNIFIED_DIM, CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.lerobot_compat import require_lerobot  # noqa: E402
from ate_ros.core.policy_contract import ChunkPolicy, PolicyObservation  # noqa: E402
from ate_ros.core.steer.lerobot.chunk_policy import LeRobotChunkPolicy  # noqa: E402

require_lerobot()
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402
from support.lerobot_fixtures import tiny_diffusion_config  # noqa: E402

EMB = Embodiment(name="lr2", joints=[JointSpec(name=f"j{i}", slot=s, lower=-1.0, upper=1.0)
                                     for i, s in enumerate([3, 10])],
                 control_rate_hz=10.0, cameras=[CameraSpec(name="front", width=16, height=16)])
STATS = {"observation.state": {"min": torch.tensor([-1.0, -1.0]), "max": torch.tensor([1.0, 0.5])},
         "action": {"min": torch.tensor([-1.0, -0.5]), "max": torch.tensor([1.0, 0.5])},
         "observation.images.front": {"mean": torch.full((3, 1, 1), 0.5),
                                      "std": torch.full((3, 1, 1), 0.2)}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_diffusion_config(EMB.dof)
    pre, post = make_pre_post_processors(cfg, dataset_stats=STATS)
    out = tmp_path_factory.mktemp("lrpol") / "ckpt"
    DiffusionPolicy(cfg).save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def _obs(k: int) -> PolicyObservation:
    q = np.zeros(UNIFIED_DIM, np.float32)
    q[EMB.slots] = [0.2 + 0.01 * k, -0.3]
    img = np.full((16, 16, 3), 30 + 10 * k, np.uint8)
    return PolicyObservation(images={"front": img}, qpos=q, mask=EMB.mask,
                             instruction="reach", stamp=0.1 * k)


def test_chunk_is_lerobots_select_action(checkpoint):
    ours = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    assert isinstance(ours, ChunkPolicy)
    assert ours.camera_names == ["front"] and ours.chunk_size == 4
    ref = DiffusionPolicy.from_pretrained(checkpoint).eval()
    pre, post = make_pre_post_processors(ref.config, pretrained_path=str(checkpoint))
    ref.reset()
    for k in range(2):  # the second chunk sees a two-step history
        chunk = ours.predict_chunk(_obs(k), seed=5)
        assert chunk.shape == (4, UNIFIED_DIM) and chunk.dtype == np.float32
        assert np.all(chunk[:, ~EMB.mask] == 0) and np.all(np.isfinite(chunk))
        ref._queues["action"].clear()  # one chunk per observation, as the node runs it
        torch.manual_seed(5)
        first = post(ref.select_action(pre(ours.frame(_obs(k)))))
        np.testing.assert_allclose(chunk[0, EMB.slots], first[0].numpy(), rtol=1e-5, atol=1e-6)
        assert np.all(chunk[:, EMB.slots] >= [-1.0 - 1e-5, -0.5 - 1e-5])  # clip_sample range


def test_refuses_a_missing_camera_and_a_wrong_embodiment(checkpoint):
    ours = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    obs = _obs(0)
    obs.images = {}
    with pytest.raises(ValueError, match="front"):
        ours.predict_chunk(obs)
    three = Embodiment(name="x", joints=[JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0)
                                           for i in range(3)])
    with pytest.raises(ValueError, match="3 joints"):
        LeRobotChunkPolicy.from_pretrained(checkpoint, three)


def test_history_follows_the_stamps(checkpoint):
    """Same stamp: the observation replaces the newest in the history (extra samples); an
    earlier stamp: a new episode (the evaluator restarts time every episode)."""
    ours = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    fresh = LeRobotChunkPolicy.from_pretrained(checkpoint, EMB)
    other = _obs(3)
    other.stamp = _obs(1).stamp
    ours.predict_chunk(_obs(0), seed=1)
    ours.predict_chunk(_obs(1), seed=1)
    again = ours.predict_chunk(other, seed=2)  # replaces _obs(1)
    fresh.predict_chunk(_obs(0), seed=1)
    np.testing.assert_array_equal(again, fresh.predict_chunk(other, seed=2))
    restart = ours.predict_chunk(_obs(0), seed=3)  # stamp 0.0 < 0.1: reset
    fresh.reset()
    np.testing.assert_array_equal(restart, fresh.predict_chunk(_obs(0), seed=3))


def test_missing_features_are_named(checkpoint, monkeypatch):
    from ate_ros.core.deploy.policy_factory import load_run_policy
    from ate_ros.core.policy_contract import PolicyFeatureError

    ours = load_run_policy(f"lerobot:{checkpoint}", EMB, num_steps=2)
    assert isinstance(ours, LeRobotChunkPolicy) and ours.supports_num_steps
    assert ours.n_action_steps == ours.chunk_size and ours.env_state_dim == 0
    assert list(ours.known_instructions) == []
    assert ours.predict_chunk(_obs(0), num_steps=2).shape == (4, UNIFIED_DIM)
    assert ours.policy.diffusion.num_inference_steps == 4  # restored after the call
    with pytest.raises(PolicyFeatureError, match="inference-time guidance"):
        ours.set_inference_guidance(object(), scale=1.0)
    monkeypatch.setattr(LeRobotChunkPolicy, "_steps_setting", lambda self: None)
    with pytest.raises(PolicyFeatureError, match="num_steps"):
        ours.predict_chunk(_obs(1), num_steps=2)
    with pytest.raises(PolicyFeatureError, match="num_steps"):
        load_run_policy(f"lerobot:{checkpoint}", EMB, num_steps=2)


def test_factory_checks_folder_and_cameras(checkpoint, tmp_path):
    from ate_ros.core.deploy import WavePolicy
    from ate_ros.core.deploy.policy_factory import (
        load_run_policy,
        policy_kind,
        saved_policy_settings,
    )

    assert isinstance(load_run_policy("wave", EMB), WavePolicy)
    assert [policy_kind(s) for s in ("hold", f"lerobot:{checkpoint}", str(tmp_path))] == [
        "builtin", "lerobot", "ate"]
    s = saved_policy_settings(f"lerobot:{checkpoint}")
    assert (s.chunk_size, s.n_action_steps, s.env_state_dim, s.replan_steps) == (4, 4, 0, 0)
    assert saved_policy_settings("wave").replan_steps is None
    with pytest.raises(FileNotFoundError, match="not found"):
        load_run_policy(f"lerobot:{tmp_path / 'nothing'}", EMB)
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_run_policy(f"lerobot:{tmp_path / 'half'}", EMB)
    blind = Embodiment(name="blind", joints=EMB.joints, control_rate_hz=10.0)
    with pytest.raises(ValueError, match="camera 'front'"):
        load_run_policy(f"lerobot:{checkpoint}", blind)
    big = Embodiment(name="big", joints=EMB.joints, control_rate_hz=10.0,
                     cameras=[CameraSpec(name="front", width=32, height=24)])
    with pytest.raises(ValueError, match="16x16"):
        load_run_policy(f"lerobot:{checkpoint}", big)
