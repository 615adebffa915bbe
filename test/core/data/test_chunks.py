"""Chunk datasets: windowing, unified-space mapping, key choice, normalisation, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset
from ate_ros.core.data.chunks import (
    CHUNK,
    MASK,
    ChunkDataError,
    ChunkSource,
    fit_chunk_stats,
    load_chunks,
    make_windows,
)
from ate_ros.core.data.episode_format import EpisodeFormatError


def test_make_windows_stride_one_drop_pad_error():
    a = np.arange(10, dtype=np.float32)[:, None]
    b = np.arange(3, dtype=np.float32)[:, None]
    win, idx = make_windows([a, b], 4)
    assert win.shape == (7, 4, 1) and idx.tolist() == [0] * 7
    np.testing.assert_array_equal(win[2, :, 0], [2, 3, 4, 5])
    win, idx = make_windows([a, b], 4, short="pad")
    assert win.shape == (8, 4, 1) and idx[-1] == 1
    np.testing.assert_array_equal(win[-1, :, 0], [0, 1, 2, 2])
    with pytest.raises(ChunkDataError, match="shorter than the chunk size"):
        make_windows([a, b], 4, short="error", files=["a.hdf5", "b.hdf5"])
    with pytest.raises(ChunkDataError, match="no episode"):
        make_windows([b], 4)


def test_load_chunks_two_embodiments_unified(tmp_path):
    a3, a4 = toy_arm("arm3", 3), toy_arm("arm4", 4, first_slot=50)
    write_toy_dataset(tmp_path / "p3", a3, n_train=2, n_val=1, length=20, seed=0)
    write_toy_dataset(tmp_path / "p4", a4, n_train=3, n_val=1, length=12, seed=1)
    cs = load_chunks([ChunkSource(tmp_path / "p3", a3), ChunkSource(tmp_path / "p4", a4)],
                     "train", 8)
    assert len(cs) == 2 * 13 + 3 * 5 and cs.chunks.shape[1:] == (8, 128)
    assert cs.keys == ["action", "action"] and cs.names == ["arm3", "arm4"]
    m = cs.chunk_masks
    assert m[0, :3].all() and not m[0, 3:].any() and m[-1, 50:54].all() and m[-1].sum() == 4
    # off-mask slots are zero; item dictionary uses the module keys
    assert np.all(cs.chunks[~m[:, None, :].repeat(8, 1)] == 0)
    item = cs[len(cs) - 1]
    assert item[CHUNK].shape == (8, 128) and item[MASK].sum() == 4
    stats = fit_chunk_stats(cs)
    # each slot's stats come only from the robot using it; unused slots pass through
    sel = cs.chunks[cs.source == 1][:, :, 50]
    assert stats.mean[50] == pytest.approx(sel.mean(), abs=1e-5)
    assert stats.std[50] == pytest.approx(sel.std(), rel=1e-4)
    assert stats.mean[10] == 0 and stats.std[10] == 1
    assert stats.min[0] == pytest.approx(cs.chunks[cs.source == 0][:, :, 0].min())


def test_key_choice_reference_layout_and_mixing(tmp_path):
    arm = toy_arm("arm3", 3)
    write_toy_dataset(tmp_path / "ref", arm, n_train=2, n_val=1, length=10, with_action=False)
    src = ChunkSource(tmp_path / "ref", arm)
    assert load_chunks([src], "train", 4).keys == ["qpos"]
    with pytest.raises(ChunkDataError, match="no 'action'"):
        load_chunks([src], "train", 4, key="action")
    # bare reference file: only qpos, no attributes
    with h5py.File(tmp_path / "ref" / "train" / "bare.hdf5", "w") as f:
        f["qpos"] = np.zeros((6, 3), np.float32)
    assert len(load_chunks([src], "train", 4)) == 2 * 7 + 3
    # mixing files with and without action under key=auto is refused
    write_toy_dataset(tmp_path / "mix", arm, n_train=1, n_val=1, length=10)
    write_toy_dataset(tmp_path / "mix2", arm, n_train=1, n_val=1, length=10, with_action=False)
    (tmp_path / "mix2" / "train" / "episode_0000.hdf5").rename(
        tmp_path / "mix" / "train" / "episode_0009.hdf5")
    with pytest.raises(ChunkDataError, match="refuses to mix"):
        load_chunks([ChunkSource(tmp_path / "mix", arm)], "train", 4)
    assert load_chunks([ChunkSource(tmp_path / "mix", arm)], "train", 4, key="qpos").keys == [
        "qpos"]


def test_bad_input_names_the_file(tmp_path):
    arm = toy_arm("arm3", 3)
    write_toy_dataset(tmp_path / "d", arm, n_train=2, n_val=1, length=10)
    bad = tmp_path / "d" / "train" / "episode_0001.hdf5"
    with h5py.File(bad, "r+") as f:
        q = f["qpos"][()]
        q[3, 1] = np.nan
        del f["qpos"]
        f["qpos"] = q
    with pytest.raises(EpisodeFormatError, match="episode_0001.*NaN"):
        load_chunks([ChunkSource(tmp_path / "d", arm)], "train", 4)
    with pytest.raises(ChunkDataError, match="episode_0002.*4 joints"):
        load_chunks([ChunkSource(tmp_path / "d", toy_arm("arm4", 4))], "val", 4)
    with pytest.raises(ChunkDataError, match="slots"):
        load_chunks([ChunkSource(tmp_path / "d", toy_arm("arm3", 3, first_slot=5))], "val", 4)
    (tmp_path / "e" / "train").mkdir(parents=True)
    with pytest.raises(EpisodeFormatError, match="no episode files"):
        load_chunks([ChunkSource(tmp_path / "e", arm)], "train", 4)
    # no val/: validation would hold out train episodes, and there are none
    with pytest.raises(EpisodeFormatError, match="train: no episode files"):
        load_chunks([ChunkSource(tmp_path / "e", arm)], "val", 4)
