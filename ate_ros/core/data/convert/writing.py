"""Writing a bag's episodes (HDF5, :mod:`ate_ros.core.data.episode_format`) and accounting for
every message it read.

Each episode gathers, per kept tick, the joint state (``qpos``), the action (the command
interpolated one period ahead, or the next joint state), the decoded frames, the environment
state (when the bag has one) and the instruction, and is written into the staging folder.
:func:`account` then gives each topic its manifest record: ``read == used + sum(dropped)``,
every dropped message with a reason.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ate_ros.core.data import resample as R
from ate_ros.core.data.bags import METADATA_INSTRUCTION, METADATA_SUCCESS, METADATA_TASK
from ate_ros.core.data.convert.decoding import Frames
from ate_ros.core.data.convert.spec import (
    DROP_BAG_FAILED,
    DROP_OUTSIDE,
    DROP_SUPERSEDED,
    ROLE_CAMERA,
    ROLE_INSTRUCTION,
    ROLE_MARKER,
)
from ate_ros.core.data.convert.streams import BagStreams
from ate_ros.core.data.episode_format import Episode, write_episode


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def instruction_at(bs: BagStreams, t0: int, t1: int) -> str:
    """The instruction of an episode from ``t0`` to ``t1`` (ns): the spec's, else the latest
    instruction message at its start (or the first inside it), else the bag's metadata."""
    if bs.spec.instruction:
        return bs.spec.instruction
    s = bs.instr
    if s is not None and len(s.stamps):
        k = np.flatnonzero(s.keep_mask())
        before = k[s.stamps[k] <= t0]
        inside = k[(s.stamps[k] > t0) & (s.stamps[k] <= t1)]
        pick = before[-1] if len(before) else (inside[0] if len(inside) else None)
        if pick is not None:
            return str(s.payload[pick])
    return bs.bag.metadata.get(METADATA_INSTRUCTION, "")


def episode_labels(bs: BagStreams) -> tuple[str, bool | None]:
    """``(task, success)`` of the bag's episodes: the spec's task, else the bag metadata's, and
    the metadata's ``success`` (``true``/``false``, ``1``/``0``, ``yes``/``no``; None when absent
    or unreadable, with a warning)."""
    meta = bs.bag.metadata
    task = bs.spec.task or meta.get(METADATA_TASK, "")
    text = meta.get(METADATA_SUCCESS)
    if text is None:
        return task, None
    success = _BOOLS.get(text.strip().lower())
    if success is None:
        bs.warnings.append(f"bag metadata success={text!r} is not true/false; not stored")
    return task, success


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def write_episodes(bs: BagStreams, episodes: list[dict[str, Any]], frames: Frames, name: str,
                   stage: Path, written: list[Path]) -> list[dict[str, Any]]:
    """Write ``episodes`` as ``<name>[_epNNN].hdf5`` under ``stage``.

    Args:
        written: Each file's path is appended before it is written, so that a caller cleaning
            up after an error finds a half-written file too.

    Returns:
        The manifest record of each episode (file, frames, start, end, instruction, task,
        success, sha256).
    """
    js, emb, spec = bs.joints, bs.emb, bs.spec
    period = bs.timing.period
    task, success = episode_labels(bs)
    multi = len(episodes) > 1
    records = []
    for e_i, ep in enumerate(episodes):
        t = np.concatenate([row["t"][ticks] for row, ticks in ep["parts"]])
        jidx = np.concatenate([row[js.topic][ticks] for row, ticks in ep["parts"]])
        qpos = np.stack([js.payload[i] for i in jidx]).astype(np.float32)
        js.used.update(jidx.tolist())
        if bs.action_source == "next_state":
            nidx = np.concatenate([row["next"][ticks] for row, ticks in ep["parts"]])
            action = np.stack([js.payload[i] for i in nidx]).astype(np.float32)
            js.used.update(nidx.tolist())
        else:
            s = bs.action
            aidx = np.concatenate([row[s.topic][ticks] for row, ticks in ep["parts"]])
            action = np.stack([
                R.interpolate_points(s.payload[i][0], s.payload[i][1],
                                     (tick + period - s.stamps[i]) / 1e9)
                for i, tick in zip(aidx.tolist(), t.tolist(), strict=True)
            ]).astype(np.float32)
            s.used.update(aidx.tolist())
        images = {}
        for cam, s, _ in bs.cameras:
            cidx = np.concatenate([row[s.topic][ticks] for row, ticks in ep["parts"]])
            images[cam.name] = np.stack([frames[(s.topic, i)] for i in cidx.tolist()])
            s.used.update(cidx.tolist())
        env_state, env_names = None, []
        if bs.env_state is not None:
            s = bs.env_state
            eidx = np.concatenate([row[s.topic][ticks] for row, ticks in ep["parts"]])
            env_state = np.stack([s.payload[i][1] for i in eidx.tolist()]).astype(np.float32)
            env_names = list(bs.env_state_names or ())
            s.used.update(eidx.tolist())
        instruction = instruction_at(bs, int(t[0]), int(t[-1]))
        if not instruction:
            bs.warnings.append(f"episode {e_i}: no instruction (no {spec.instruction_topic} "
                               "message, no metadata, no --instruction)")
        fname = f"{name}_ep{e_i:03d}.hdf5" if multi else f"{name}.hdf5"
        episode = Episode(
            qpos=qpos, action=action, timestamps=t / 1e9, images=images,
            instruction=instruction, task=task, success=success, embodiment=emb.name,
            joint_names=list(emb.joint_names), slots=emb.slots, rate_hz=bs.timing.rate,
            source=str(bs.path), env_state=env_state, env_state_names=env_names)
        out = stage / fname
        written.append(out)
        write_episode(out, episode, compression=spec.compression)
        records.append({
            "file": fname, "frames": len(t), "start": float(t[0] / 1e9),
            "end": float(t[-1] / 1e9), "instruction": instruction, "task": task,
            "success": success, "sha256": sha256_file(out)})
        if not np.all(emb.within_limits(qpos, tol=1e-6)):
            bs.warnings.append(f"{fname}: joint positions outside the embodiment limits")
    return records


def account(bs: BagStreams, topics: dict[str, dict[str, Any]],
            episodes: list[dict[str, Any]]) -> None:
    """Per topic read: ``read = used + dropped``, with a reason for every dropped message.

    Args:
        topics: The bag's topic records (manifest), updated in place.
        episodes: The episode records :func:`write_episodes` returned.

    Raises:
        RuntimeError: The counts do not reconcile (a bug, not a bag problem).
    """
    spans = [(e["start"], e["end"]) for e in episodes]
    timing = bs.timing
    for topic, s in bs.streams.items():
        entry = topics[topic]
        dropped: Counter[str] = Counter(s.reason.values())
        if s.role in (ROLE_INSTRUCTION, ROLE_MARKER):
            used = s.read - sum(dropped.values())
        else:
            used = len(s.used)
            keep = np.flatnonzero(s.keep_mask())
            stamps = s.stamps[keep] / 1e9 if len(keep) else np.zeros(0)
            age = (timing.image_age if s.role.startswith(ROLE_CAMERA) else timing.joint_age) / 1e9
            inside = np.zeros(len(keep), bool)
            for a, b in spans:
                inside |= (stamps >= a - age) & (stamps <= b)
            unused = np.array([i not in s.used for i in keep.tolist()], dtype=bool)
            dropped[DROP_OUTSIDE] += int((unused & ~inside).sum())
            dropped[DROP_SUPERSEDED] += int((unused & inside).sum())
        keep_all = s.keep_mask()
        entry.update({
            "read": s.read, "used": used,
            "dropped": {k: v for k, v in dropped.items() if v},
            "rate_hz": round(R.measured_rate(s.stamps[keep_all]), 3)})
        if entry["read"] != entry["used"] + sum(entry["dropped"].values()):
            raise RuntimeError(f"{topic}: message accounting does not reconcile: {entry}")
    _unread(topics)


def account_failed(bs: BagStreams | None, topics: dict[str, dict[str, Any]]) -> None:
    """The topic records of a bag that failed at any stage (``bs`` None: before reading).

    Nothing of a failed bag is used: each message read is dropped, with the reason cleaning or
    decoding gave it, else ``bag_failed``; so ``read == used + sum(dropped)`` holds here too.
    """
    streams = bs.streams if bs is not None else {}
    for topic, s in streams.items():
        if topic not in topics:
            continue
        dropped: Counter[str] = Counter(s.reason.values())
        dropped[DROP_BAG_FAILED] += s.read - sum(dropped.values())
        topics[topic].update({
            "read": s.read, "used": 0, "dropped": {k: v for k, v in dropped.items() if v},
            "rate_hz": round(R.measured_rate(np.asarray(s.stamps, dtype=np.int64)), 3)})
    _unread(topics)


def _unread(topics: dict[str, dict[str, Any]]) -> None:
    """Records of the topics no role read (their messages are counted in ``count`` only)."""
    for entry in topics.values():
        if "read" not in entry:
            entry.update({"read": 0, "used": 0, "dropped": {}, "rate_hz": None})
