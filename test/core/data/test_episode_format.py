"""The episode HDF5 format: round trip, reference-layout compatibility, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ate_ros.core.data.episode_format import (
    Episode,
    EpisodeFormatError,
    episode_paths,
    read_episode,
    write_episode,
)


def _episode(T: int = 6) -> Episode:
    rng = np.random.default_rng(0)
    return Episode(qpos=rng.normal(size=(T, 3)).astype(np.float32),
                   action=rng.normal(size=(T, 3)).astype(np.float32),
                   timestamps=np.arange(T) * 0.1 + 100.0,
                   images={"front": rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8)},
                   instruction="reach the red ball", task="reach", embodiment="toy3",
                   joint_names=["j0", "j1", "j2"], slots=np.array([0, 1, 2]), rate_hz=10.0,
                   success=True, source="unit")


def test_roundtrip(tmp_path) -> None:
    ep = _episode()
    write_episode(tmp_path / "train" / "ep0.hdf5", ep)
    back = read_episode(tmp_path / "train" / "ep0.hdf5")
    np.testing.assert_array_equal(back.qpos, ep.qpos)
    np.testing.assert_array_equal(back.images["front"], ep.images["front"])
    np.testing.assert_array_equal(back.timestamps, ep.timestamps)
    assert (back.instruction, back.joint_names, list(back.slots), back.success) == \
        (ep.instruction, ep.joint_names, [0, 1, 2], True)
    assert read_episode(tmp_path / "train" / "ep0.hdf5", load_images=False).images == {}
    assert [p.name for p in episode_paths(tmp_path, "train")] == ["ep0.hdf5"]
    assert not list((tmp_path / "train").glob(".*tmp*")), "temp file left behind"


def test_reference_layout_is_readable(tmp_path) -> None:
    """The ATE reference code's files hold only `qpos`: they must load as episodes."""
    path = tmp_path / "ref.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("qpos", data=np.zeros((5, 14)))
    ep = read_episode(path)
    assert ep.qpos.shape == (5, 14) and ep.action is None and ep.slots is None


@pytest.mark.parametrize("mutate, match", [
    (lambda e: setattr(e, "qpos", e.qpos[:0]), "T>0"),
    (lambda e: e.qpos.__setitem__((2, 1), np.nan), "row 2, column 1"),
    (lambda e: setattr(e, "action", e.action[:-1]), "action shape"),
    (lambda e: setattr(e, "timestamps", e.timestamps[::-1].copy()), "strictly increasing"),
    (lambda e: e.images.__setitem__("front", e.images["front"].astype(np.float32)), "uint8"),
])
def test_invalid_episodes_rejected(tmp_path, mutate, match) -> None:
    ep = _episode()
    mutate(ep)
    with pytest.raises(EpisodeFormatError, match=match):
        write_episode(tmp_path / "bad.hdf5", ep)
    assert not (tmp_path / "bad.hdf5").exists()


def test_corrupt_and_missing(tmp_path) -> None:
    bad = tmp_path / "corrupt.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(EpisodeFormatError, match="corrupt.hdf5"):
        read_episode(bad)
    with pytest.raises(EpisodeFormatError, match="missing 'val/'"):
        episode_paths(tmp_path, "val")
    (tmp_path / "train").mkdir()
    with pytest.raises(EpisodeFormatError, match="no episode files"):
        episode_paths(tmp_path, "train")
