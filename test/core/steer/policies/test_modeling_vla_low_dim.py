"""The low-dimensional observation track and relative actions of the compact VLA policy.

Environment state (object positions) from the simulator through episodes, datasets, the policy
and evaluation; relative actions (chunk minus the observed joint state) in normalisation,
sampling, save/load and guidance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.overfit import losses_before_after
from support.tiny_policy import tiny_vla_config, toy_embodiment, toy_policy_dataset

from ate_ros.core.data.episode_format import (
    EpisodeFormatError,
    read_episode,
    write_episode,
)
from ate_ros.core.data.policy_dataset import (
    OBS_ENV_STATE,
    OBS_IMAGES,
    PolicyDatasetError,
    write_toy_dataset,
)
from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.sim.evaluate import default_execution
from ate_ros.core.steer.guidance import GuidanceConfig, LatentGuidance
from ate_ros.core.steer.policies import VLAConfig, VLAPolicy, load_policy

E = 5


def _cfg(**kw):
    """The tiny policy without cameras, reading an E-value environment state."""
    return tiny_vla_config(**{"camera_names": [], "env_state_dim": E, **kw})


@pytest.fixture(scope="module")
def low_dim_data(tmp_path_factory):
    """The toy dataset plus an environment state that tells where each episode goes."""
    root = write_toy_dataset(tmp_path_factory.mktemp("lowdim"), toy_embodiment(), episodes=3,
                             length=8, image_size=8, val_episodes=1)
    for path in sorted(root.glob("*/*.hdf5")):
        ep = read_episode(path)
        T = len(ep)
        ep.env_state = np.tile(np.r_[ep.qpos[-1], 1.0, 0.0].astype(np.float32), (T, 1))
        ep.env_state_names = [f"goal/{i}" for i in range(3)] + ["present", "zero"]
        ep.images = {}
        write_episode(path, ep)
    return root


@pytest.fixture(scope="module")
def low_dim_ds(low_dim_data):
    return toy_policy_dataset([low_dim_data], [], 8, env_state_dim=E)


def _obs(seed=0, env=True):
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[:3] = True
    q = np.zeros(128, np.float32)
    q[:3] = rng.uniform(-1, 1, 3)
    return PolicyObservation(images={}, qpos=q, mask=mask, instruction="reach the target",
                             env_state=rng.uniform(-1, 1, E).astype(np.float32) if env else None)


def test_episode_env_state_round_trip_and_validation(tmp_path, low_dim_data):
    ep = read_episode(sorted((low_dim_data / "train").iterdir())[0])
    assert ep.env_state.shape == (len(ep), E) and ep.env_state_names[3] == "present"
    write_episode(tmp_path / "a.hdf5", ep)
    back = read_episode(tmp_path / "a.hdf5")
    np.testing.assert_array_equal(back.env_state, ep.env_state)
    assert back.env_state_names == ep.env_state_names
    ep.env_state = ep.env_state[:-1]
    with pytest.raises(EpisodeFormatError, match="environment_state must be"):
        write_episode(tmp_path / "b.hdf5", ep)
    ep.env_state = np.full((len(ep), E), np.nan, np.float32)
    with pytest.raises(EpisodeFormatError, match="NaN"):
        write_episode(tmp_path / "c.hdf5", ep)
    assert not (tmp_path / "b.hdf5").exists() and not (tmp_path / "c.hdf5").exists()


def test_dataset_loads_env_state_without_images(low_dim_ds):
    batch = low_dim_ds.get_batch(np.arange(3))
    assert OBS_IMAGES not in batch and batch[OBS_ENV_STATE].shape == (3, E)
    stats = low_dim_ds.fit_env_stats()
    assert stats.dim == E and stats.std[-1] == 1.0  # a constant column passes through


def test_dataset_without_env_state_is_refused_by_name(tmp_path):
    root = write_toy_dataset(tmp_path / "plain", toy_embodiment(), episodes=1, length=5,
                             image_size=8, val_episodes=0)
    with pytest.raises(PolicyDatasetError, match="no environment_state"):
        toy_policy_dataset([root], [], 8, env_state_dim=E)
    path = next((root / "train").iterdir())
    ep = read_episode(path)
    ep.env_state = np.zeros((len(ep), 5), np.float32)
    write_episode(path, ep)
    with pytest.raises(PolicyDatasetError, match="has 5 values, the policy reads 7"):
        toy_policy_dataset([root], [], 8, env_state_dim=7)


def test_relative_action_stats_are_those_of_chunk_minus_state(low_dim_ds):
    _, rel = low_dim_ds.fit_stats(relative=True, max_frames=10 ** 6)
    idx = np.arange(len(low_dim_ds))
    offsets = low_dim_ds.actions[low_dim_ds.chunk_indices(idx)] - low_dim_ds.qpos[idx][:, None]
    np.testing.assert_allclose(rel.mean[:3], offsets[..., :3].reshape(-1, 3).mean(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rel.std[:3], offsets[..., :3].reshape(-1, 3).std(0), rtol=1e-4)
    _, absolute = low_dim_ds.fit_stats()
    assert not np.allclose(absolute.mean[:3], rel.mean[:3])


def test_relative_policy_adds_the_state_back_and_normalises_offsets(low_dim_ds):
    torch.manual_seed(0)
    m = VLAPolicy(_cfg(action_mode="relative"))
    m.set_norm_stats(*low_dim_ds.fit_stats(relative=True))
    m.set_env_stats(low_dim_ds.fit_env_stats())
    m.eval()
    obs = _obs()
    chunk = m.predict_chunk(obs, seed=1)
    moved = _obs()
    moved.qpos[:3] += 0.25  # same everything, state shifted: the output follows the state ...
    ref = m.action_reference(m.observation_to_batch(moved))
    assert torch.allclose(ref[0, 0, :3], torch.from_numpy(moved.qpos[:3]))
    with torch.no_grad():  # ... exactly, when the network ignores the state input
        m.state_proj[-1].weight.zero_()
        m.state_proj[-1].bias.zero_()
    a, b = m.predict_chunk(obs, seed=1), m.predict_chunk(moved, seed=1)
    np.testing.assert_allclose(b[:, :3] - a[:, :3], 0.25, atol=1e-5)
    assert np.all(chunk[:, 3:] == 0)


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_low_dim_policy_learns_and_round_trips(tmp_path, low_dim_ds, mode):
    torch.manual_seed(1)
    m = VLAPolicy(_cfg(action_mode=mode, n_action_steps=2, d_model=64, ffn_dim=128,
                       prediction_type="sample"))
    m.set_norm_stats(*low_dim_ds.fit_stats(relative=mode == "relative"))
    m.set_env_stats(low_dim_ds.fit_env_stats())
    batch = low_dim_ds.get_batch(np.arange(len(low_dim_ds)))
    before, after = losses_before_after(m, batch, 80)
    assert after < before / 5, (before, after)
    m.eval()
    obs = _obs()
    a = m.predict_chunk(obs, seed=3)
    m.save_pretrained(tmp_path / "p")
    m2 = load_policy(tmp_path / "p")
    assert m2.config.env_state_dim == E and m2.config.action_mode == mode
    assert m2.n_action_steps == 2 and m2.camera_names == []
    np.testing.assert_array_equal(a, m2.predict_chunk(obs, seed=3))
    assert not np.array_equal(a, m2.predict_chunk(_obs(seed=5), seed=3))
    with pytest.raises(ValueError, match="environment state"):
        m2.predict_chunk(_obs(env=False), seed=3)


def test_guidance_sees_absolute_chunks_of_a_relative_policy():
    """The alignment VAE encodes absolute joint chunks: for a relative policy the guidance
    gradient must equal the absolute one taken at chunk + state."""
    torch.manual_seed(2)
    w = torch.randn(3, 2)

    def encoder(x):  # a nonlinear stand-in for the stage-2 encoder: (B, H, D) -> (B, 2)
        return torch.tanh(x[..., :3] @ w).mean(1)

    g = LatentGuidance(encoder, "sample", GuidanceConfig(enabled=True, scale=1.0, clamp=0.0,
                                                             direction="paper"))
    noisy, clean = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    state = torch.randn(2, 1, 3)
    rel = g.gradient(noisy, clean, offset=state)
    absolute = g.gradient(noisy + state, clean + state)
    torch.testing.assert_close(rel, absolute)
    assert not torch.allclose(rel, g.gradient(noisy, clean))


def test_receding_horizon_execution_follows_the_policy():
    m = VLAPolicy(_cfg(chunk_size=8, n_action_steps=3))
    assert default_execution(m).replan_steps == 5
    assert default_execution(VLAPolicy(_cfg())).replan_steps == \
        type(default_execution(m))().replan_steps


def test_config_validation():
    with pytest.raises(ValueError, match="at least one camera unless env_state_dim"):
        VLAConfig(camera_names=[], env_state_dim=0)
    with pytest.raises(ValueError, match="action_mode"):
        _cfg(action_mode="delta")
    with pytest.raises(ValueError, match="n_action_steps"):
        _cfg(n_action_steps=9)
    with pytest.raises(ValueError, match="NaN"):
        PolicyObservation(images={}, qpos=np.zeros(128), mask=np.ones(128, bool),
                          env_state=np.array([np.nan]))


def test_sim_env_state_is_recorded_and_observed(tmp_path):
    from ate_ros.core.sim.env import SimEnv
    from ate_ros.core.sim.object_labels import COLOR_NAMES, ENV_STATE_DIM, ENV_STATE_NAMES
    from ate_ros.core.sim.recording import record_dataset

    with SimEnv("sim_arm6", "pick_color", seed=3) as env:
        obs = env.reset(render=False)
        pobs = obs.to_policy(env.embodiment)
        assert pobs.env_state.shape == (ENV_STATE_DIM,)
        state = env.task_state()
        slot = {n: i for i, n in enumerate(ENV_STATE_NAMES)}
        present = [c for c in COLOR_NAMES if pobs.env_state[slot[f"{c}/present"]] == 1.0]
        assert len(present) == 2  # two coloured blocks, at their true positions
        found = [pobs.env_state[slot[f"{c}/dx"]:slot[f"{c}/dz"] + 1] for c in present]
        tip = env.ee_position()
        assert any(np.allclose(f, state["target"] - tip, atol=1e-6) for f in found)
        # The block the instruction names leads the state; this task has no goal.
        named = pobs.env_state[slot["target/present"]:slot["target/dz"] + 1]
        np.testing.assert_allclose(named, [1.0, *(state["target"] - tip)], atol=1e-6)
        assert env.instruction == f"touch the {env.task.colors[env.task.target_index]} block"
        assert not pobs.env_state[slot["goal/present"]:slot["goal/dz"] + 1].any()
        np.testing.assert_allclose(pobs.env_state[-3:], tip, atol=1e-6)
    record_dataset("sim_arm6", "push", 1, tmp_path / "d", seed=1, val_fraction=0.0,
                   render=False)
    ep = read_episode(next((tmp_path / "d" / "train").iterdir()))
    assert ep.env_state.shape == (len(ep), ENV_STATE_DIM)
    assert ep.env_state_names == list(ENV_STATE_NAMES)
    red_dx, tip_x = ENV_STATE_NAMES.index("red/dx"), ENV_STATE_NAMES.index("tip/x")
    block_x = ep.env_state[:, red_dx] + ep.env_state[:, tip_x]
    assert np.ptp(block_x) > 0.05, "the pushed block moves in the record"
    # push: the target is the block, the goal its offset to the disc (shrinks as it is pushed).
    target_dx, goal_dx = ENV_STATE_NAMES.index("target/dx"), ENV_STATE_NAMES.index("goal/dx")
    np.testing.assert_allclose(ep.env_state[:, target_dx], ep.env_state[:, red_dx])
    to_goal = np.linalg.norm(ep.env_state[:, goal_dx:goal_dx + 2], axis=1)
    assert to_goal[-1] < 0.03 < to_goal[0], "the expert pushed the block onto the goal"
