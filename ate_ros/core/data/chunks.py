"""Windowed action-chunk datasets for the alignment VAEs.

An alignment dataset is a folder in the project's episode format (``DATASET/train/*.hdf5`` and
``DATASET/val/*.hdf5``, see :mod:`ate_ros.core.data.episode_format`); plain ATE reference files
with only ``qpos`` are read as well, and so are LeRobotDatasets
(:mod:`ate_ros.core.data.lerobot_reader`: its ``action`` column per episode). Every episode
becomes stride-1 windows of ``H`` consecutive rows (the reference's windowing), mapped into
RDT's 128-slot unified space with the embodiment's slots, so chunks of several robots share one
``(N, H, 128)`` tensor plus a per-source mask.

Which array is chunked (option ``key``):

- ``"action"``: the commanded joint positions. The VAE must see the same quantity the policy
  predicts, and our policies predict ``action``, so this is what our own datasets should use.
- ``"qpos"``: the measured positions; the only array reference files have.
- ``"auto"`` (default): ``action`` when every episode of a dataset has it, ``qpos`` when none
  has it; a dataset with some of each is an error (the two would be mixed in one latent space).

Episodes shorter than ``H`` are dropped (the reference's behaviour, a warning names each file),
edge-padded by repeating their last row (``short="pad"``), or rejected (``short="error"``).
Chunks are stored in joint units; normalisation is the model's business (see
:func:`fit_chunk_stats`, which fits each slot only over the robots that use it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ate_ros.core.data.episode_format import (
    ACTION,
    CHUNK_KEYS,
    KEY_AUTO,
    QPOS,
    ChunkDataError,
    read_episode,
    split_episode_paths,
)
from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.normalization import NormStats

logger = logging.getLogger(__name__)

SHORT_DROP, SHORT_PAD, SHORT_ERROR = "drop", "pad", "error"
SHORT_MODES = (SHORT_DROP, SHORT_PAD, SHORT_ERROR)

# Keys of the items returned by ChunkSet.__getitem__ (batch dictionaries).
CHUNK = "chunk"
MASK = "mask"
SOURCE = "source"


@dataclass
class ChunkSource:
    """One dataset folder and the embodiment its episodes were recorded with."""

    dataset: Path
    embodiment: Embodiment

    def __post_init__(self) -> None:
        self.dataset = Path(self.dataset)


def select_key(files: Sequence[Path], has_action: Sequence[bool], key: str) -> str:
    """The array (``action`` or ``qpos``) that ``key`` means for one dataset's episodes
    (:data:`~ate_ros.core.data.episode_format.CHUNK_KEYS`); align and steer both decide here,
    with the same messages."""
    if key not in CHUNK_KEYS:
        raise ValueError(f"key must be one of {CHUNK_KEYS}, got {key!r}")
    if key == QPOS:
        return QPOS
    missing = [f for f, h in zip(files, has_action) if not h]
    if key == ACTION:
        if missing:
            raise ChunkDataError(f"{missing[0]}: no '{ACTION}' dataset (--key action); pass "
                                 "--key qpos to use the measured positions instead")
        return ACTION
    if not missing:
        return ACTION
    if len(missing) == len(files):
        logger.warning("%s: no episode has '%s'; using the measured positions '%s' "
                       "(--key auto; pass --key action to refuse such data)",
                       Path(files[0]).parent.parent, ACTION, QPOS)
        return QPOS
    have = next(f for f, h in zip(files, has_action) if h)
    raise ChunkDataError(
        f"{missing[0]} has no '{ACTION}' but {have} does; --key auto refuses to mix commanded "
        "and measured positions: pass --key qpos or --key action explicitly")


def load_episode_arrays(source: ChunkSource, split: str, key: str = KEY_AUTO
                        ) -> tuple[list[np.ndarray], list[Path], str]:
    """Read every episode of ``split``; returns ((T, D) arrays, files, key used).

    Errors (naming the file): unreadable HDF5, NaN/inf, a width different from the embodiment's
    joint count, ``slots`` attributes that disagree with the embodiment.

    A LeRobotDataset folder (``meta/info.json``, or a ``lerobot:`` prefix) is read by
    :func:`ate_ros.core.data.lerobot_reader.load_lerobot_arrays` instead (LeRobot imported only
    then): its ``action`` (or ``observation.state``) column per episode.
    """
    from ate_ros.core.data.lerobot_reader import is_lerobot_dataset, load_lerobot_arrays

    if is_lerobot_dataset(source.dataset):
        return load_lerobot_arrays(source.dataset, source.embodiment, split, key)
    emb = source.embodiment
    files = split_episode_paths(source.dataset, split)
    episodes = [read_episode(f, load_images=False) for f in files]
    used = select_key(files, [ep.action is not None for ep in episodes], key)
    arrays = []
    for f, ep in zip(files, episodes):
        arr = ep.action if used == ACTION else ep.qpos
        if arr.shape[1] != emb.dof:
            raise ChunkDataError(
                f"{f}: '{used}' has {arr.shape[1]} columns but embodiment {emb.name!r} has "
                f"{emb.dof} joints {emb.joint_names}")
        if ep.slots is not None and not np.array_equal(ep.slots, emb.slots):
            raise ChunkDataError(
                f"{f}: slots {ep.slots.tolist()} differ from embodiment {emb.name!r} slots "
                f"{emb.slots.tolist()}")
        if ep.joint_names and list(ep.joint_names) != emb.joint_names:
            logger.warning("%s: joint names %s differ from embodiment %s %s (slots agree)",
                           f, ep.joint_names, emb.name, emb.joint_names)
        arrays.append(np.asarray(arr, dtype=np.float32))
    return arrays, files, used


def make_windows(arrays: Sequence[np.ndarray], chunk_size: int, short: str = SHORT_DROP,
                 files: Sequence[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stride-1 windows inside each episode.

    Args:
        arrays: (T_i, D) per episode.
        chunk_size: H.
        short: what to do with T_i < H (see module docstring).
        files: names for messages.

    Returns:
        windows (N, H, D) float32 and episode index (N,) int64.
    """
    if short not in SHORT_MODES:
        raise ValueError(f"short must be one of {SHORT_MODES}, got {short!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out, index = [], []
    for i, arr in enumerate(arrays):
        name = files[i] if files is not None else f"episode {i}"
        T = arr.shape[0]
        if T < chunk_size:
            if short == SHORT_ERROR:
                raise ChunkDataError(f"{name}: {T} steps, shorter than the chunk size "
                                     f"{chunk_size} (use short='drop' or 'pad')")
            if short == SHORT_DROP:
                logger.warning("%s: %d steps < chunk size %d, dropped", name, T, chunk_size)
                continue
            arr = np.concatenate([arr, np.repeat(arr[-1:], chunk_size - T, axis=0)], axis=0)
            T = chunk_size
        # (T - H + 1, H, D) view, copied so the result owns contiguous memory.
        win = np.lib.stride_tricks.sliding_window_view(arr, chunk_size, axis=0)
        out.append(np.ascontiguousarray(win.transpose(0, 2, 1)))
        index.append(np.full(T - chunk_size + 1, i, dtype=np.int64))
    if not out:
        names = ", ".join(str(f) for f in (files or [])[:3])
        raise ChunkDataError(
            f"no episode is at least {chunk_size} steps long ({names}...); lower the chunk "
            "size or use short='pad'")
    return np.concatenate(out).astype(np.float32), np.concatenate(index)


@dataclass
class ChunkSet(torch.utils.data.Dataset):
    """Unified-space chunks of one or more sources.

    Attributes:
        chunks: (N, H, 128) float32 in joint units, zeros outside each chunk's mask.
        source: (N,) int64 index into ``masks``/``names``.
        masks: (S, 128) bool, one row per source embodiment.
        names: source names (embodiment names).
        keys: the array each source was chunked from (``action`` or ``qpos``).
    """

    chunks: np.ndarray
    source: np.ndarray
    masks: np.ndarray
    names: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.chunks.ndim != 3 or self.chunks.shape[-1] != UNIFIED_DIM:
            raise ValueError(f"chunks must be (N, H, {UNIFIED_DIM}), got {self.chunks.shape}")
        if self.masks.shape[1:] != (UNIFIED_DIM,):
            raise ValueError(f"masks must be (S, {UNIFIED_DIM}), got {self.masks.shape}")

    def __len__(self) -> int:
        return int(self.chunks.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {CHUNK: torch.from_numpy(self.chunks[i]),
                MASK: torch.from_numpy(self.masks[self.source[i]]),
                SOURCE: torch.tensor(int(self.source[i]))}

    @property
    def chunk_size(self) -> int:
        return int(self.chunks.shape[1])

    @property
    def chunk_masks(self) -> np.ndarray:
        """(N, 128) bool mask of every chunk."""
        return self.masks[self.source]

    @property
    def union_mask(self) -> np.ndarray:
        return self.masks.any(0)


def load_chunks(sources: Sequence[ChunkSource], split: str, chunk_size: int,
                key: str = KEY_AUTO, short: str = SHORT_DROP) -> ChunkSet:
    """Chunks of ``split`` from every source, in the unified space (see :class:`ChunkSet`)."""
    if not sources:
        raise ValueError("at least one dataset is needed")
    all_chunks, all_src, masks, names, keys = [], [], [], [], []
    for s, src in enumerate(sources):
        arrays, files, used = load_episode_arrays(src, split, key)
        win, _ = make_windows(arrays, chunk_size, short, files)
        all_chunks.append(src.embodiment.to_unified(win))
        all_src.append(np.full(len(win), s, dtype=np.int64))
        masks.append(src.embodiment.mask)
        names.append(src.embodiment.name)
        keys.append(used)
        logger.info("%s/%s: %d episodes -> %d chunks of %d (%s, %s)", src.dataset, split,
                    len(arrays), len(win), chunk_size, used, src.embodiment.name)
    return ChunkSet(chunks=np.concatenate(all_chunks).astype(np.float32),
                    source=np.concatenate(all_src), masks=np.stack(masks), names=names,
                    keys=keys)


def fit_chunk_stats(chunk_set: ChunkSet, mode: str = "mean_std") -> NormStats:
    """Per-slot statistics, each slot fitted only over the chunks whose robot uses it.

    (Fitting over all chunks would pull a slot's mean toward the zeros that robots without that
    joint carry there.) Unused slots pass through (mean 0, std 1). Both mean/std and min/max are
    stored; ``mode`` picks the one applied. The VAEs default to mean/std: it keeps joints that
    barely move small instead of stretching them to [-1, 1].
    """
    D = UNIFIED_DIM
    mean, std = np.zeros(D), np.ones(D)
    lo, hi = -np.ones(D), np.ones(D)
    cm = chunk_set.chunk_masks
    for d in np.flatnonzero(chunk_set.union_mask):
        vals = chunk_set.chunks[cm[:, d], :, d].astype(np.float64).ravel()
        st = NormStats.fit(vals[:, None], mode=mode)
        mean[d], std[d], lo[d], hi[d] = st.mean[0], st.std[0], st.min[0], st.max[0]
    return NormStats(mean=mean, std=std, min=lo, max=hi, mode=mode)
