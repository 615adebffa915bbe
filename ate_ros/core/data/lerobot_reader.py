"""A LeRobotDataset folder as the input of ``ate-ros align``: per-episode action arrays.

A folder is a LeRobotDataset when it has ``meta/info.json`` (LeRobot's own marker); a
``lerobot:`` prefix (``--adapt lerobot:data/x``) says so explicitly, and then a folder without
that file is an error instead of being read as our episode format. The data are read with
LeRobot's own ``LeRobotDataset`` class (only the ``action`` / ``observation.state`` columns:
no image or video is decoded), imported only here, so the rest of the core never imports
LeRobot.

What maps onto what:

==========================  ====================================================================
our alignment input         from the LeRobotDataset
==========================  ====================================================================
``action`` chunks           the ``action`` column, per ``episode_index``, in ``frame_index`` order
``qpos`` chunks             the ``observation.state`` column (``key="qpos"``)
joint order                 the feature's ``names`` (``bag2dataset --format lerobot`` writes the
                            embodiment's joint names): columns are reordered to the embodiment's
                            order by name; names that are not the embodiment's joints are an
                            error (they are the only link from a column to a unified slot)
embodiment                  ``embodiment.yaml`` at the dataset root (our export copies it there),
                            else ``robot_type`` of ``meta/info.json`` as a
                            ``config/embodiments`` name
train / val split           ``meta/ate_ros_export.json`` (our export records it), else the
                            ``splits`` of ``meta/info.json`` (``"train": "0:40"``), else the last
                            tenth of the episodes (at least one) is held out as ``val``
==========================  ====================================================================
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from ate_ros.core.data.episode_format import ACTION, EMBODIMENT_FILE, QPOS, SPLITS, ChunkDataError
from ate_ros.core.embodiment import Embodiment, EmbodimentError, load_embodiment
from ate_ros.core.lerobot_compat import LEROBOT_PREFIX, is_lerobot_spec

logger = logging.getLogger(__name__)

INFO_FILE = "meta/info.json"
EXPORT_MANIFEST = "meta/ate_ros_export.json"
LR_ACTION = "action"
LR_STATE = "observation.state"
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"
VAL_FRACTION = 0.1
"""Share of episodes held out as ``val`` when the dataset defines no validation split."""

# Our chunk keys -> the LeRobot column they are read from.
COLUMNS = {ACTION: LR_ACTION, QPOS: LR_STATE}


def dataset_root(spec: str | Path) -> Path:
    """The folder of a dataset argument, without a ``lerobot:`` prefix."""
    s = str(spec)
    return Path(s[len(LEROBOT_PREFIX):]) if is_lerobot_spec(s) else Path(s)


def is_lerobot_dataset(spec: str | Path) -> bool:
    """True for ``lerobot:<dir>`` and for any folder with ``meta/info.json``."""
    return is_lerobot_spec(str(spec)) or (dataset_root(spec) / INFO_FILE).is_file()


def read_info(spec: str | Path) -> dict:
    """``meta/info.json`` of a LeRobotDataset (no LeRobot import).

    Raises:
        ChunkDataError: the folder is missing, is not a LeRobotDataset, or has no data files.
    """
    root = dataset_root(spec)
    if not root.is_dir():
        raise ChunkDataError(f"LeRobotDataset folder not found: {root}")
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise ChunkDataError(f"{root} is not a LeRobotDataset: no {INFO_FILE} (write one with "
                             "`ate-ros bag2dataset --format lerobot`)")
    # Without local parquet files LeRobotDataset would try to download the dataset from the
    # Hugging Face Hub under its repo id: refuse before it gets the chance.
    if not any((root / "data").rglob("*.parquet")):
        raise ChunkDataError(f"{root}: no data/*.parquet files (an incomplete LeRobotDataset)")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as exc:
        raise ChunkDataError(f"{info_path}: not valid JSON ({exc})") from exc
    _check_info(info, info_path)
    return info


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_info(info: object, file: Path) -> None:
    """The fields of ``meta/info.json`` this reader and LeRobot's metadata read, each of the
    type they need (a :class:`ChunkDataError` naming the file and the field otherwise)."""
    def bad(field: str, want: str, got: object) -> ChunkDataError:
        return ChunkDataError(f"{file}: field {field!r} must be {want}, got {got!r}"[:400])

    if not isinstance(info, dict):
        raise bad("<root>", "a JSON object", type(info).__name__)
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise bad("features", "an object of features", features)
    for name, feature in features.items():
        if not isinstance(feature, dict):
            raise bad(f"features.{name}", "an object (dtype, shape, names)", feature)
        if not isinstance(feature.get("dtype"), str):
            raise bad(f"features.{name}.dtype", "a dtype name", feature.get("dtype"))
        shape = feature.get("shape")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise bad(f"features.{name}.shape", "a list of sizes", shape)
        names = feature.get("names")
        if isinstance(names, dict):
            names = next(iter(names.values()), None)
        if names is not None and (not isinstance(names, list)
                                  or not all(isinstance(n, str) for n in names)):
            raise bad(f"features.{name}.names", "a list of names (or null)", feature["names"])
    for field in ("total_episodes", "total_frames", "chunks_size"):
        if field in info and not _is_count(info[field]):
            raise bad(field, "a count", info[field])
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise bad("fps", "a positive rate", fps)
    declared = info.get("splits")
    if declared is not None and (not isinstance(declared, dict) or not all(
            isinstance(v, str) and _is_range(v) for v in declared.values())):
        raise bad("splits", 'an object of "first:end" episode ranges', declared)
    for field in ("robot_type", "data_path", "codebase_version"):
        if field in info and info[field] is not None and not isinstance(info[field], str):
            raise bad(field, "a string", info[field])


def _is_range(text: str) -> bool:
    a, _, b = text.partition(":")
    return a.isdigit() and b.isdigit()


def feature_names(feature: dict) -> list[str] | None:
    """A feature's column names: a list, or LeRobot v2's ``{"motors": [...]}``; None if unset."""
    names = feature.get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None)
    if not names:
        return None
    return [str(n) for n in names]


def embodiment_spec(spec: str | Path) -> str:
    """What :func:`~ate_ros.core.embodiment.load_embodiment` should load for this dataset.

    Raises:
        EmbodimentError: neither ``embodiment.yaml`` nor a known ``robot_type``.
    """
    root = dataset_root(spec)
    if (root / EMBODIMENT_FILE).is_file():
        return str(root / EMBODIMENT_FILE)
    robot = str(read_info(root).get("robot_type") or "")
    if robot:
        try:
            load_embodiment(robot)
            return robot
        except EmbodimentError:
            pass
    raise EmbodimentError(
        f"{root}: no {EMBODIMENT_FILE} and robot_type {robot!r} is not a config/embodiments "
        "name; pass the embodiment explicitly (--embodiment-ada / --embodiment-pre)")


def splits(spec: str | Path, total_episodes: int) -> dict[str, list[int]]:
    """Episode indices of ``train`` and ``val`` (see the module docstring for the order)."""
    root = dataset_root(spec)
    manifest = root / EXPORT_MANIFEST
    if manifest.is_file():
        rec = _export_splits(manifest)
        if rec.get("train"):
            return {s: rec.get(s, []) for s in SPLITS}
    declared = read_info(root).get("splits") or {}
    out: dict[str, list[int]] = {}
    for s in SPLITS:
        rng = declared.get(s)
        if isinstance(rng, str) and ":" in rng:
            a, b = rng.split(":", 1)
            out[s] = list(range(int(a), int(b)))
    if out.get("train") and out.get("val"):
        return {s: out[s] for s in SPLITS}
    episodes = out.get("train") or list(range(total_episodes))
    if len(episodes) < 2:
        return {"train": episodes, "val": []}
    n_val = max(1, math.ceil(VAL_FRACTION * len(episodes)))
    logger.info("%s defines no validation split: holding out its last %d episode(s) as val",
                root, n_val)
    return {"train": episodes[:-n_val], "val": episodes[-n_val:]}


def _export_splits(manifest: Path) -> dict[str, list[int]]:
    """The ``splits`` our export recorded (``{"train": [0, 1], "val": [2]}``), checked."""
    try:
        doc = json.loads(manifest.read_text())
    except ValueError as exc:
        raise ChunkDataError(f"{manifest}: not valid JSON ({exc})") from exc
    rec = doc.get("splits") if isinstance(doc, dict) else None
    if rec is None:
        return {}
    if not isinstance(rec, dict) or not all(
            s in SPLITS and isinstance(v, list) and all(_is_count(i) for i in v)
            for s, v in rec.items()):
        raise ChunkDataError(f"{manifest}: field 'splits' must map train/val to lists of "
                             f"episode indices, got {rec!r}"[:400])
    return rec


def _column_order(names: list[str] | None, emb: Embodiment, column: str, where: Path
                  ) -> np.ndarray | None:
    """Index that puts the dataset's columns in the embodiment's joint order (None: as is)."""
    if names is None:
        logger.warning("%s: %r has no joint names; assuming the embodiment %s's order %s",
                       where, column, emb.name, emb.joint_names)
        return None
    if names == emb.joint_names:
        return None
    if sorted(names) == sorted(emb.joint_names):
        return np.array([names.index(n) for n in emb.joint_names])
    raise ChunkDataError(
        f"{where}: {column!r} columns are named {names}, embodiment {emb.name!r} has joints "
        f"{emb.joint_names}; the names map columns to unified slots, so they must be the "
        "embodiment's joints (pass the embodiment the dataset was recorded with)")


def load_lerobot_arrays(spec: str | Path, embodiment: Embodiment, split: str,
                        key: str = "auto") -> tuple[list[np.ndarray], list[Path], str]:
    """Per-episode (T, D) arrays of ``split``, as ``chunks.load_episode_arrays`` returns them.

    Args:
        spec: The dataset folder (``lerobot:`` prefix optional).
        embodiment: The robot the dataset was recorded with (joint names and count).
        split: ``train`` or ``val``.
        key: ``action``, ``qpos`` (``observation.state``) or ``auto`` (``action`` if present).

    Returns:
        (arrays in the embodiment's joint order, one pseudo-path per episode for messages,
        the key used).

    Raises:
        ChunkDataError: not a LeRobotDataset, no such column, a width different from the
            embodiment's joint count, joint names that are not the embodiment's, NaN/inf, or no
            episode in ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = dataset_root(spec)
    info = read_info(root)
    features = info.get("features") or {}
    if key == "auto":
        key = ACTION if LR_ACTION in features else QPOS
    if key not in COLUMNS:
        raise ValueError(f"key must be one of auto, {', '.join(COLUMNS)}, got {key!r}")
    column = COLUMNS[key]
    if column not in features:
        raise ChunkDataError(f"{root}: the LeRobotDataset has no {column!r} feature (has "
                             f"{sorted(features)})")
    width = int(np.prod(features[column].get("shape") or [0]))
    if width != embodiment.dof:
        raise ChunkDataError(
            f"{root}: {column!r} has {width} columns but embodiment {embodiment.name!r} has "
            f"{embodiment.dof} joints {embodiment.joint_names}")
    order = _column_order(feature_names(features[column]), embodiment, column, root)
    split_map = splits(root, int(info.get("total_episodes", 0)))
    wanted = split_map[split]
    if not wanted:
        sizes = {s: len(v) for s, v in split_map.items()}
        raise ChunkDataError(f"{root}: no episode in split {split!r} (episodes per split: "
                             f"{sizes}); convert with a validation share (--split)")

    from ate_ros.core.lerobot_compat import require_lerobot

    require_lerobot()
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ate_ros.core.lerobot_compat import lerobot_errors

    # meta/ (episodes, tasks, stats) and data/*.parquet as LeRobot reads them: whatever does
    # not match meta/info.json is reported naming the dataset and LeRobot's words.
    with lerobot_errors(root, "LeRobot cannot read this dataset (meta/, data/*.parquet)",
                        ChunkDataError):
        ds = LeRobotDataset(f"ate_ros/{root.name}", root=root, episodes=sorted(wanted))
        # LeRobot's own torch transform, on three columns only: no image is loaded or decoded.
        rows = ds.hf_dataset.select_columns([EPISODE_INDEX, FRAME_INDEX, column])[:]
        values = torch.stack(list(rows[column])).to(torch.float32).numpy().reshape(-1, width)
        episode = torch.stack(list(rows[EPISODE_INDEX])).numpy().reshape(-1)
        frame = torch.stack(list(rows[FRAME_INDEX])).numpy().reshape(-1)
    arrays, names = [], []
    for ep in sorted(wanted):
        sel = np.flatnonzero(episode == ep)
        name = root / f"episode_{ep:06d}"
        if sel.size == 0:
            raise ChunkDataError(f"{name}: listed in split {split!r} but has no frames")
        arr = values[sel[np.argsort(frame[sel], kind="stable")]]
        if order is not None:
            arr = arr[:, order]
        if not np.all(np.isfinite(arr)):
            raise ChunkDataError(f"{name}: {column!r} contains NaN or inf")
        arrays.append(np.ascontiguousarray(arr, dtype=np.float32))
        names.append(name)
    return arrays, names, key


__all__ = ["INFO_FILE", "dataset_root", "embodiment_spec", "feature_names",
           "is_lerobot_dataset", "load_lerobot_arrays", "read_info", "splits"]
