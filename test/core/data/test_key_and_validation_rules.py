"""One rule per question (#29): align and steer decide the same way about episodes without
``action`` (``--key``: refused with the same message, or the measured positions used by both),
and about a dataset whose ``val/`` has no episodes (the last train episodes held out, which
verify-dataset announces)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset
from ate_ros.core.data.chunks import ChunkSource, load_chunks
from ate_ros.core.data.episode_format import (
    EpisodeFormatError,
    held_out_episodes,
    split_episode_paths,
    validation_plan,
)
from ate_ros.core.data.policy_dataset import PolicyDataset
from ate_ros.core.data.verify import verify_dataset


def _embed(texts):
    return np.zeros((len(texts), 4), np.float32)


def _steer_data(ds, arm, split="train", key="auto"):
    return PolicyDataset([ds], split, 4, [], 16, [arm], _embed, key=key)


def _align_data(ds, arm, split="train", key="auto"):
    return load_chunks([ChunkSource(ds, arm)], split, 4, key=key)


@pytest.fixture
def arm():
    return toy_arm("arm3", 3)


def _messages(fn, *args, **kw) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kw)
    return str(info.value)


def test_missing_action_same_rule_for_align_and_steer(tmp_path, arm):
    ref = write_toy_dataset(tmp_path / "ref", arm, n_train=2, n_val=1, length=10,
                            with_action=False)
    # --key action: both refuse, with the same message
    a = _messages(_align_data, ref, arm, key="action")
    s = _messages(_steer_data, ref, arm, key="action")
    assert a == s and "no 'action'" in a and "--key qpos" in a
    # --key auto on data with no action at all: both use the measured positions
    assert _align_data(ref, arm).keys == ["qpos"]
    ds = _steer_data(ref, arm)
    q = ds.qpos[: ds.episodes[0].length]
    np.testing.assert_array_equal(ds.actions[: ds.episodes[0].length - 1], q[1:])
    # a mix of episodes with and without action: both refuse, with the same message
    write_toy_dataset(tmp_path / "mix", arm, n_train=1, n_val=1, length=10)
    shutil.copy(ref / "train" / "episode_0000.hdf5", tmp_path / "mix" / "train" / "zz.hdf5")
    a = _messages(_align_data, tmp_path / "mix", arm)
    s = _messages(_steer_data, tmp_path / "mix", arm)
    assert a == s and "refuses to mix" in a


def test_dataset_without_val_episodes_holds_out_train_episodes(tmp_path, arm):
    ds = write_toy_dataset(tmp_path / "d", arm, n_train=5, n_val=1, length=10)
    shutil.rmtree(ds / "val")
    assert held_out_episodes(5) == 1 and held_out_episodes(1) == 0
    train, val = split_episode_paths(ds, "train"), split_episode_paths(ds, "val")
    assert [p.name for p in val] == ["episode_0004.hdf5"] and val[0] not in train
    assert len(train) == 4
    # align and steer read the same split
    assert len(_align_data(ds, arm, "val")) == len(_steer_data(ds, arm, "val")) - 3
    plan = validation_plan(ds)
    assert "hold out the last 1 of 5" in plan
    report = verify_dataset(ds)
    assert report.ok and plan in report.warnings
    # one episode: trained and validated on, and said so
    one = write_toy_dataset(tmp_path / "one", arm, n_train=1, n_val=0, length=10)
    assert split_episode_paths(one, "val") == split_episode_paths(one, "train")
    assert "not held out" in validation_plan(one)
    # no train episodes at all stays an error
    (tmp_path / "none" / "train").mkdir(parents=True)
    with pytest.raises(EpisodeFormatError, match="no episode files"):
        split_episode_paths(tmp_path / "none", "val")
