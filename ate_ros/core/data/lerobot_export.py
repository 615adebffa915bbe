"""Our episode datasets (``episode_format``) -> a LeRobotDataset (v3), through LeRobot's writer.

Every episode of ``train/`` then ``val/`` becomes one LeRobot episode, written with
``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``:

==============================  ==============================================================
LeRobot feature                 from
==============================  ==============================================================
``observation.state``           ``qpos`` (D joints, names = the embodiment's joint names)
``action``                      ``action`` (else ``qpos[t + 1]``, the last frame held)
``observation.images.<cam>``    ``images/<cam>`` (``image`` frames, or ``video`` if asked)
``task``                        the episode's instruction (else its task name)
fps                             the episode rate (the embodiment's control rate)
==============================  ==============================================================

Images are stored as frames by default: LeRobot decodes ``video`` features with torchcodec,
which needs FFmpeg libraries that a plain pip venv lacks (docs/lerobot.md). The output is
written atomically (a temporary sibling folder renamed at the end), and
``meta/ate_ros_export.json`` records the embodiment, the source episode of each LeRobot
episode and the train/val split.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from ate_ros.core.data.episode_format import (
    EMBODIMENT_FILE,
    SPLITS,
    Episode,
    EpisodeFormatError,
    episode_paths,
    read_episode,
)

logger = logging.getLogger(__name__)

OBS_STATE = "observation.state"
ACTION = "action"
OBS_IMAGE_PREFIX = "observation.images."
TASK = "task"
EXPORT_MANIFEST = "meta/ate_ros_export.json"


def _actions(ep: Episode) -> np.ndarray:
    if ep.action is not None:
        return np.asarray(ep.action, dtype=np.float32)
    q = np.asarray(ep.qpos, dtype=np.float32)
    return np.concatenate([q[1:], q[-1:]], 0)


def _fps(rate_hz: float, where: str) -> int:
    fps = int(round(rate_hz))
    if fps < 1 or abs(fps - rate_hz) > 1e-6:
        raise EpisodeFormatError(f"{where}: rate {rate_hz} Hz is not a whole number of frames "
                                 "per second, which LeRobotDataset needs (fps is an int)")
    return fps


def lerobot_features(ep: Episode, use_videos: bool = False) -> dict:
    """LeRobot feature specs for episodes shaped like ``ep``."""
    names = list(ep.joint_names) or [f"joint_{i}" for i in range(ep.qpos.shape[1])]
    D = len(names)
    feats = {OBS_STATE: {"dtype": "float32", "shape": (D,), "names": names},
             ACTION: {"dtype": "float32", "shape": (D,), "names": names}}
    for cam, frames in sorted(ep.images.items()):
        feats[OBS_IMAGE_PREFIX + cam] = {"dtype": "video" if use_videos else "image",
                                         "shape": tuple(frames.shape[1:]),
                                         "names": ["height", "width", "channels"]}
    return feats


def export_lerobot(dataset: str | Path, out: str | Path, repo_id: str | None = None,
                   use_videos: bool = False, overwrite: bool = False) -> Path:
    """Write ``dataset`` (our format) as a LeRobotDataset at ``out``; returns ``out``.

    Raises:
        EpisodeFormatError: no episodes, episodes that disagree on joints, cameras or rate.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    from ate_ros.core.lerobot_compat import require_lerobot

    require_lerobot()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset, out = Path(dataset), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite)")
    files: list[tuple[str, Path]] = []
    for split in SPLITS:
        try:
            files += [(split, p) for p in episode_paths(dataset, split)]
        except EpisodeFormatError:
            if split == "train":
                raise
    first = read_episode(files[0][1])
    features = lerobot_features(first, use_videos)
    fps = _fps(first.rate_hz, str(files[0][1]))
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    record: dict = {"source": str(dataset), "embodiment": first.embodiment,
                    "splits": {s: [] for s in SPLITS}, "episodes": []}
    try:
        ds = LeRobotDataset.create(repo_id or f"ate_ros/{dataset.name}", fps, features,
                                   root=tmp, robot_type=first.embodiment or None,
                                   use_videos=use_videos)
        for index, (split, path) in enumerate(files):
            ep = first if index == 0 else read_episode(path)
            if lerobot_features(ep, use_videos) != features or _fps(ep.rate_hz, str(path)) != fps:
                raise EpisodeFormatError(f"{path}: joints, cameras or rate differ from "
                                         f"{files[0][1]}; export one embodiment at a time")
            task = ep.instruction or ep.task or first.embodiment or "task"
            actions = _actions(ep)
            for t in range(len(ep)):
                frame = {OBS_STATE: ep.qpos[t].astype(np.float32), ACTION: actions[t],
                         TASK: task}
                for cam, frames in ep.images.items():
                    frame[OBS_IMAGE_PREFIX + cam] = frames[t]
                ds.add_frame(frame)
            ds.save_episode()
            record["splits"][split].append(index)
            record["episodes"].append({"index": index, "split": split, "source": str(path),
                                       "frames": len(ep), "task": task})
        ds.finalize()
        if (dataset / EMBODIMENT_FILE).is_file():
            shutil.copy2(dataset / EMBODIMENT_FILE, tmp / EMBODIMENT_FILE)
        (tmp / EXPORT_MANIFEST).write_text(json.dumps(record, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("LeRobotDataset with %d episodes written to %s", len(files), out)
    return out


__all__ = ["ACTION", "EXPORT_MANIFEST", "OBS_IMAGE_PREFIX", "OBS_STATE", "TASK",
           "export_lerobot", "lerobot_features"]
