"""The auxiliary episode-goal loss: its target, its arithmetic, and that off means off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.tiny_policy import tiny_vla_config, toy_embodiment, toy_policy_dataset

from ate_ros.core.data.policy_dataset import EPISODE_GOAL, write_toy_dataset
from ate_ros.core.steer.guidance import masked_mse
from ate_ros.core.steer.policies import VLAPolicy


def _cfg(**kw):
    return tiny_vla_config(**{"n_layers": 1, **kw})


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = write_toy_dataset(tmp_path_factory.mktemp("goal"), toy_embodiment(), episodes=3,
                             length=7, image_size=16, val_episodes=1)
    return toy_policy_dataset([root])


def test_goal_is_the_last_state_of_the_episode(ds):
    idx = np.arange(len(ds))
    goal = ds.get_batch(idx)[EPISODE_GOAL].numpy()
    for e in ds.episodes:
        last = ds.qpos[e.start + e.length - 1]
        np.testing.assert_array_equal(goal[e.start:e.start + e.length],
                                      np.broadcast_to(last, (e.length, last.shape[0])))


def test_goal_loss_adds_to_the_denoising_loss(ds):
    torch.manual_seed(0)
    m = VLAPolicy(_cfg(goal_loss_weight=0.5))
    m.set_norm_stats(*ds.fit_stats())
    batch = ds.get_batch(np.arange(len(ds)))
    loss, logs = m(batch, generator=torch.Generator().manual_seed(3))
    assert logs["loss"] == pytest.approx(logs["denoise_loss"] + 0.5 * logs["goal_loss"], rel=1e-6)
    with torch.no_grad():
        mem = m.encode_observation(batch)
        goal = (batch[EPISODE_GOAL] - m.state_shift) / m.state_scale
        want = masked_mse(m.goal_head(mem).unsqueeze(1), goal.unsqueeze(1),
                          batch["observation.mask"])
    assert logs["goal_loss"] == pytest.approx(float(want), rel=1e-5)
    loss.backward()
    assert m.image_encoder.net[0].weight.grad.abs().sum() > 0


def test_off_means_no_head_and_the_plain_loss(ds):
    torch.manual_seed(0)
    plain = VLAPolicy(_cfg())
    assert not hasattr(plain, "goal_head")
    plain.set_norm_stats(*ds.fit_stats())
    batch = ds.get_batch(np.arange(len(ds)))
    no_goal = {k: v for k, v in batch.items() if k != EPISODE_GOAL}
    a, logs = plain(batch, generator=torch.Generator().manual_seed(3))
    b, _ = plain(no_goal, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item() and "goal_loss" not in logs


def test_goal_head_learns_the_goal(ds):
    torch.manual_seed(0)
    m = VLAPolicy(_cfg(goal_loss_weight=1.0))
    m.set_norm_stats(*ds.fit_stats())
    batch = ds.get_batch(np.arange(len(ds)))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(120):
        loss, logs = m(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = logs["goal_loss"] if first is None else first
    assert logs["goal_loss"] < 0.1 * first


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="goal_loss_weight"):
        _cfg(goal_loss_weight=-1.0)
