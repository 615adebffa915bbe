"""The project's one on-disk episode format (HDF5): bag tool, simulation, VAEs and policy.

A dataset is a folder::

    DATASET/
      train/<episode>.hdf5     # one file per episode
      val/<episode>.hdf5
      embodiment.yaml          # the embodiment the episodes were recorded with (optional)
      manifest.json            # written by the bag tool / sim recorder (optional)

Each episode file is a superset of the ATE reference layout (whose loader reads only ``qpos``):

=====================  ===========================  ==========================================
key                    shape / dtype                meaning
=====================  ===========================  ==========================================
``qpos``               (T, D) float32               measured joint positions, joints in
                                                    ascending unified-slot order
``action``             (T, D) float32 (optional)    commanded joint positions; ``action[t]`` is
                                                    the target sent at ``timestamps[t]``, to be
                                                    reached one control period later
``timestamps``         (T,) float64 (optional)      seconds (header clock of the source)
``images/<camera>``    (T, H, W, 3) uint8 (opt.)    RGB frames aligned to ``timestamps``
``environment_state``  (T, E) float32 (optional)    low-dimensional scene state (object
                                                    positions), layout in the
                                                    ``environment_state_names`` attribute
=====================  ===========================  ==========================================

File attributes: ``format`` (= ``FORMAT_NAME``), ``format_version``, ``embodiment``,
``joint_names`` (D strings), ``slots`` (D ints, unified-space index of each column), ``rate_hz``,
``instruction``, ``task``, ``success`` (bool), ``source`` (e.g. the bag path). Plain reference
files carry only ``qpos``; readers then need the embodiment to know the slots.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FORMAT_NAME = "ate_ros.episode"
FORMAT_VERSION = 1
EPISODE_SUFFIX = ".hdf5"
SPLITS = ("train", "val")

# Dataset keys (constants, never bare strings elsewhere).
QPOS = "qpos"
ACTION = "action"
TIMESTAMPS = "timestamps"
IMAGES = "images"
ENV_STATE = "environment_state"
ATTR_FORMAT = "format"
ATTR_VERSION = "format_version"
ATTR_EMBODIMENT = "embodiment"
ATTR_JOINT_NAMES = "joint_names"
ATTR_SLOTS = "slots"
ATTR_RATE = "rate_hz"
ATTR_INSTRUCTION = "instruction"
ATTR_TASK = "task"
ATTR_SUCCESS = "success"
ATTR_SOURCE = "source"
ATTR_ENV_STATE_NAMES = "environment_state_names"
MANIFEST = "manifest.json"
KEY_AUTO = "auto"
CHUNK_KEYS = (KEY_AUTO, ACTION, QPOS)
"""What align chunks and steer/pretrain train towards (``--key``): ``action`` (commanded
positions; refused where an episode has none), ``qpos`` (measured positions: align chunks them,
steer targets the next measured pose), ``auto`` (``action`` when every episode of a dataset has
it, ``qpos`` when none has, with a warning; a dataset with some of each is refused)."""
EMBODIMENT_FILE = "embodiment.yaml"


class EpisodeFormatError(ValueError):
    """An episode file or dataset folder does not follow the format."""


class ChunkDataError(EpisodeFormatError):
    """Episodes cannot be turned into chunks (too short, wrong width, mixed keys...)."""


@dataclass
class Episode:
    """One episode in memory. Arrays follow the table in the module docstring."""

    qpos: np.ndarray
    action: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    instruction: str = ""
    task: str = ""
    embodiment: str = ""
    joint_names: list[str] = field(default_factory=list)
    slots: np.ndarray | None = None
    rate_hz: float = 0.0
    success: bool | None = None
    source: str = ""
    path: str = ""
    env_state: np.ndarray | None = None
    env_state_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.qpos.shape[0])

    def validate(self) -> None:
        """Raise :class:`EpisodeFormatError` naming the first problem found."""
        where = self.path or self.source or "episode"
        q = np.asarray(self.qpos)
        if q.ndim != 2 or q.shape[0] == 0:
            raise EpisodeFormatError(f"{where}: qpos must be (T>0, D), got {q.shape}")
        if not np.all(np.isfinite(q)):
            bad = np.argwhere(~np.isfinite(q))[0]
            raise EpisodeFormatError(
                f"{where}: qpos has NaN/inf (first at row {bad[0]}, column {bad[1]})")
        T, D = q.shape
        if self.action is not None:
            a = np.asarray(self.action)
            if a.shape != (T, D):
                raise EpisodeFormatError(
                    f"{where}: action shape {a.shape} != qpos shape {q.shape}")
            if not np.all(np.isfinite(a)):
                raise EpisodeFormatError(f"{where}: action has NaN/inf")
        if self.timestamps is not None:
            t = np.asarray(self.timestamps)
            if t.shape != (T,):
                raise EpisodeFormatError(f"{where}: timestamps shape {t.shape} != ({T},)")
            if T > 1 and not np.all(np.diff(t) > 0):
                raise EpisodeFormatError(f"{where}: timestamps are not strictly increasing")
        for cam, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != T or img.shape[-1] != 3:
                raise EpisodeFormatError(
                    f"{where}: images/{cam} must be uint8 (T={T}, H, W, 3), got "
                    f"{img.dtype} {img.shape}")
        if self.env_state is not None:
            e = np.asarray(self.env_state)
            if e.ndim != 2 or e.shape[0] != T:
                raise EpisodeFormatError(
                    f"{where}: environment_state must be (T={T}, E), got {e.shape}")
            if not np.all(np.isfinite(e)):
                raise EpisodeFormatError(f"{where}: environment_state has NaN/inf")
            if self.env_state_names and len(self.env_state_names) != e.shape[1]:
                raise EpisodeFormatError(f"{where}: {len(self.env_state_names)} "
                                         f"environment_state names for E={e.shape[1]}")
        if self.joint_names and len(self.joint_names) != D:
            raise EpisodeFormatError(f"{where}: {len(self.joint_names)} joint names for D={D}")
        if self.slots is not None and len(self.slots) != D:
            raise EpisodeFormatError(f"{where}: {len(self.slots)} slots for D={D}")


def write_episode(path: str | Path, ep: Episode, compression: str | None = "lzf") -> None:
    """Write ``ep`` to ``path`` atomically (temp file + rename)."""
    import h5py

    ep.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(QPOS, data=np.asarray(ep.qpos, dtype=np.float32))
            if ep.action is not None:
                f.create_dataset(ACTION, data=np.asarray(ep.action, dtype=np.float32))
            if ep.timestamps is not None:
                f.create_dataset(TIMESTAMPS, data=np.asarray(ep.timestamps, dtype=np.float64))
            if ep.env_state is not None:
                f.create_dataset(ENV_STATE, data=np.asarray(ep.env_state, dtype=np.float32))
                f.attrs[ATTR_ENV_STATE_NAMES] = json.dumps(list(ep.env_state_names))
            if ep.images:
                g = f.create_group(IMAGES)
                for cam, img in ep.images.items():
                    g.create_dataset(cam, data=img, compression=compression,
                                     chunks=(1,) + tuple(img.shape[1:]))
            f.attrs[ATTR_FORMAT] = FORMAT_NAME
            f.attrs[ATTR_VERSION] = FORMAT_VERSION
            f.attrs[ATTR_EMBODIMENT] = ep.embodiment
            f.attrs[ATTR_JOINT_NAMES] = json.dumps(list(ep.joint_names))
            if ep.slots is not None:
                f.attrs[ATTR_SLOTS] = np.asarray(ep.slots, dtype=np.int64)
            f.attrs[ATTR_RATE] = float(ep.rate_hz)
            f.attrs[ATTR_INSTRUCTION] = ep.instruction
            f.attrs[ATTR_TASK] = ep.task
            if ep.success is not None:
                f.attrs[ATTR_SUCCESS] = bool(ep.success)
            f.attrs[ATTR_SOURCE] = ep.source
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _attr_str(attrs: Any, key: str) -> str:
    v = attrs.get(key, "")
    if isinstance(v, np.ndarray) or not isinstance(v, (str, bytes, np.str_, np.bytes_)):
        raise EpisodeFormatError(f"attribute '{key}' must be a string, got {v!r}")
    return v.decode() if isinstance(v, bytes) else str(v)


def _attr_json_list(attrs: Any, key: str) -> list[str]:
    """A JSON list of names stored as a string attribute ('' or absent: none)."""
    text = _attr_str(attrs, key)
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EpisodeFormatError(f"attribute '{key}' is not JSON ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EpisodeFormatError(f"attribute '{key}' must be a JSON list of names, got {text!r}")
    return value


def _attr_number(attrs: Any, key: str, default: float) -> float:
    v = attrs.get(key, default)
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                              np.floating)):
        raise EpisodeFormatError(f"attribute '{key}' must be a number, got {v!r}")
    if not np.isfinite(v):
        raise EpisodeFormatError(f"attribute '{key}' must be finite, got {v}")
    return float(v)


def _array(f: Any, key: str, dtype: Any) -> np.ndarray:
    """Dataset ``key`` as ``dtype``; a group, strings or complex numbers name the key."""
    import h5py

    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise EpisodeFormatError(f"'{key}' must be a dataset, got a {type(node).__name__}")
    kind = node.dtype.kind
    if kind not in ("f", "i", "u") and not (kind == "b" and dtype == np.uint8):
        raise EpisodeFormatError(f"'{key}' has dtype {node.dtype}; expected numbers "
                                 f"({np.dtype(dtype)})")
    return np.asarray(node[()], dtype=dtype)


def read_episode(path: str | Path, load_images: bool = True, cameras: list[str] | None = None
                 ) -> Episode:
    """Read an episode file (ours or the reference layout). Errors name the file and the
    dataset or attribute at fault."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if QPOS not in f:
                raise EpisodeFormatError(f"no '{QPOS}' dataset (keys: {list(f.keys())})")
            ep = Episode(qpos=_array(f, QPOS, np.float32), path=str(path))
            if ACTION in f:
                ep.action = _array(f, ACTION, np.float32)
            if TIMESTAMPS in f:
                ep.timestamps = _array(f, TIMESTAMPS, np.float64)
            if ENV_STATE in f:
                ep.env_state = _array(f, ENV_STATE, np.float32)
                ep.env_state_names = _attr_json_list(f.attrs, ATTR_ENV_STATE_NAMES)
            if load_images and IMAGES in f:
                if not isinstance(f[IMAGES], h5py.Group):
                    raise EpisodeFormatError(f"'{IMAGES}' must be a group of cameras")
                for cam in f[IMAGES]:
                    if cameras is None or cam in cameras:
                        node = f[IMAGES][cam]
                        if not isinstance(node, h5py.Dataset):
                            raise EpisodeFormatError(f"'{IMAGES}/{cam}' must be a dataset")
                        ep.images[cam] = np.asarray(node[()])
            a = f.attrs
            ep.embodiment = _attr_str(a, ATTR_EMBODIMENT)
            ep.joint_names = _attr_json_list(a, ATTR_JOINT_NAMES)
            if ATTR_SLOTS in a:
                slots = np.asarray(a[ATTR_SLOTS])
                if slots.ndim != 1 or slots.dtype.kind not in ("i", "u"):
                    raise EpisodeFormatError(f"attribute '{ATTR_SLOTS}' must be a list of "
                                             f"integers, got {a[ATTR_SLOTS]!r}")
                ep.slots = slots.astype(np.int64)
            ep.rate_hz = _attr_number(a, ATTR_RATE, 0.0)
            ep.instruction = _attr_str(a, ATTR_INSTRUCTION)
            ep.task = _attr_str(a, ATTR_TASK)
            if ATTR_SUCCESS in a:
                success = a[ATTR_SUCCESS]
                if not isinstance(success, (bool, np.bool_)):
                    raise EpisodeFormatError(f"attribute '{ATTR_SUCCESS}' must be true/false, "
                                             f"got {success!r}")
                ep.success = bool(success)
            ep.source = _attr_str(a, ATTR_SOURCE)
    except EpisodeFormatError as exc:
        raise EpisodeFormatError(f"{path}: {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise EpisodeFormatError(f"{path}: cannot read HDF5 ({exc})") from exc
    ep.validate()
    return ep


def episode_paths(dataset: str | Path, split: str) -> list[Path]:
    """Sorted episode files of ``split``; error if the split folder is missing or empty."""
    if split not in SPLITS:
        raise EpisodeFormatError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(dataset) / split
    if not folder.is_dir():
        raise EpisodeFormatError(f"{dataset}: missing '{split}/' folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in (EPISODE_SUFFIX, ".h5"))
    if not files:
        raise EpisodeFormatError(f"{folder}: no episode files (*{EPISODE_SUFFIX})")
    return files


VAL_SHARE_WITHOUT_VAL = 0.1
"""Share of ``train/`` episodes held out for validation when ``val/`` has none."""


def held_out_episodes(n_train: int) -> int:
    """Train episodes held out for validation when ``val/`` is missing or empty: the last
    ``max(1, round(0.1 n))`` when there are at least 2, else none (the one episode is both
    trained and validated on)."""
    return 0 if n_train < 2 else max(1, round(VAL_SHARE_WITHOUT_VAL * n_train))


def _has_split(dataset: str | Path, split: str) -> bool:
    folder = Path(dataset) / split
    return folder.is_dir() and any(p.suffix in (EPISODE_SUFFIX, ".h5") for p in folder.iterdir())


def validation_plan(dataset: str | Path) -> str:
    """What align and steer validate on, in words ('' when ``val/`` has episodes)."""
    if _has_split(dataset, "val"):
        return ""
    train = episode_paths(dataset, "train")
    k = held_out_episodes(len(train))
    if k:
        names = ", ".join(p.name for p in train[-k:])
        return (f"{dataset}: val/ has no episodes; align and steer hold out the last {k} of "
                f"{len(train)} train/ episodes for validation ({names})")
    return (f"{dataset}: val/ has no episodes and train/ only one; align and steer validate on "
            f"that training episode ({train[0].name}), so the validation loss is not held out")


def split_episode_paths(dataset: str | Path, split: str) -> list[Path]:
    """The episode files ``split`` of a dataset means for training and validation.

    As :func:`episode_paths` when ``val/`` has episodes. Without them (a dataset converted from
    one bag) the rule is :func:`held_out_episodes`: the last train episodes become the
    validation split and are not trained on; a single episode is used for both. Align and
    steer read their data through this function, so they agree on every dataset.
    """
    if split not in SPLITS:
        raise EpisodeFormatError(f"split must be one of {SPLITS}, got {split!r}")
    if _has_split(dataset, "val"):
        return episode_paths(dataset, split)
    train = episode_paths(dataset, "train")
    k = held_out_episodes(len(train))
    if split == "val":
        logger.warning("%s", validation_plan(dataset))
        return train[-k:] if k else train
    return train[:-k] if k else train

