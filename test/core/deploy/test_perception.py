"""ROS-free logic behind the deployment nodes (ate_ros.core.deploy)."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.deploy import (
    FreshestSync,
    HoldPolicy,
    PerceptionConfig,
    PolicyNodeConfig,
    TrajectoryFollower,
    WavePolicy,
    prepare_image,
)
from ate_ros.core.policy_contract import PolicyObservation


def test_prepare_image_center_crop_and_stretch():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white, the sides black
    out = prepare_image(img, 32, 32, "center")
    assert out.shape == (32, 32, 3) and out.min() == 255  # only the centre survives
    out = prepare_image(img, 32, 32, "stretch")
    assert out.shape == (32, 32, 3) and out.min() == 0
    same = np.ones((32, 32, 3), np.uint8)
    assert prepare_image(same, 32, 32) is same


def test_freshest_sync_refuses_stale_and_skewed():
    s = FreshestSync(["cam", "joint_states"], max_age=0.5, max_skew=0.2)
    ok, why = s.check(1.0)
    assert not ok and "no data" in why
    s.put("cam", 1.0, "img1")
    s.put("joint_states", 1.1, "q1")
    assert s.check(1.2) == (True, "")
    assert s.newest_stamp() == pytest.approx(1.1)
    ok, why = s.check(1.7)  # cam is 0.7 s old
    assert not ok and "max_age" in why and s.refused["stale"] == 1
    s.put("cam", 0.5, "older")  # out-of-order sample does not replace a newer one
    assert s.get("cam") == "img1"
    s.put("joint_states", 1.35, "q2")
    ok, why = s.check(1.4)
    assert not ok and "apart" in why and s.refused["skew"] == 1


def test_trajectory_follower_replaces_future_part():
    f = TrajectoryFollower(np.zeros(2), now=0.0)
    f.set_trajectory(1.0, np.array([0.1, 0.2]), np.array([[1.0, 1.0], [2.0, 2.0]]), now=1.0)
    np.testing.assert_allclose(f.sample(1.05), [0.5, 0.5])
    np.testing.assert_allclose(f.sample(1.2), [2, 2])
    np.testing.assert_allclose(f.sample(5.0), [2, 2])  # holds after the end
    # A new trajectory starting in the future: the old one runs until then.
    f = TrajectoryFollower(np.zeros(1), now=0.0)
    f.set_trajectory(0.0, np.array([1.0]), np.array([[10.0]]), now=0.0)
    f.set_trajectory(0.5, np.array([0.5]), np.array([[0.0]]), now=0.2)
    np.testing.assert_allclose(f.sample(0.4), [4.0])  # old ramp 0 -> 10 over 1 s
    np.testing.assert_allclose(f.sample(0.5), [5.0])
    np.testing.assert_allclose(f.sample(0.75), [2.5])
    np.testing.assert_allclose(f.sample(1.0), [0.0])
    # Points already in the past are dropped; zero stamp means now.
    f.set_trajectory(0.1, np.array([0.1, 0.5]), np.array([[7.0], [8.0]]), now=2.0)
    assert f.dropped_points == 2
    f.set_trajectory(0.0, np.array([0.1]), np.array([[3.0]]), now=2.0)
    np.testing.assert_allclose(f.sample(2.1), [3.0])
    f.hold(2.05)
    np.testing.assert_allclose(f.sample(3.0), f.sample(2.05))
    with pytest.raises(ValueError):
        f.set_trajectory(0.0, np.array([0.1]), np.zeros((1, 2)), now=2.0)


def test_builtin_policies(small_embodiment):
    emb = small_embodiment
    q = emb.to_unified(np.array([0.1, 0.2, 0.3], np.float32))
    obs = PolicyObservation(images={}, qpos=q, mask=emb.mask, stamp=2.0)
    hold = HoldPolicy(emb).predict_chunk(obs)
    assert hold.shape == (16, 128) and np.allclose(hold, q)
    wave = WavePolicy(emb)
    c = wave.predict_chunk(obs)
    assert c.shape == (16, 128) and np.all(c[:, ~emb.mask] == 0)
    j = emb.from_unified(c)
    assert np.all(emb.within_limits(j))
    np.testing.assert_allclose(j, wave.targets(2.0 + 0.1 * np.arange(1, 17)), atol=1e-6)
    assert not np.allclose(wave.predict_chunk(obs, seed=1), c)


def test_configs_validate():
    with pytest.raises(ValueError, match="crop"):
        PerceptionConfig(crop="zoom")
    with pytest.raises(ValueError, match="kinematics"):
        PolicyNodeConfig(kinematics="fancy")
