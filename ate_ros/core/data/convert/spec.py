"""What bag2dataset reads and how it aligns (:class:`ConversionSpec`), and what it reports
(:class:`Manifest`): the settings, names and records shared by every stage of the conversion."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ate_ros.core.config_fields import strict_from_dict, validate_fields
from ate_ros.core.data import topics as T
from ate_ros.core.data.episode_format import MANIFEST

MANIFEST_FORMAT = "ate_ros.bag2dataset"
MANIFEST_VERSION = 1
ACTION_SOURCES = ("auto", "trajectory", "chunk", "next_state")
TIME_SOURCES = ("header", "receive")
GAP_POLICIES = ("split", "drop")
CLOCK_JUMP_POLICIES = ("split", "error")
FORWARD_JUMP_S = 60.0
"""Joint-stream gaps longer than this are reported as forward clock jumps, not dropped ticks."""
STAGE_DIR = ".stage"
STATUS_OK, STATUS_FAILED = "ok", "failed"

# Stream roles (manifest keys).
ROLE_JOINTS = "joint_states"
ROLE_ACTION = "action"
ROLE_INSTRUCTION = "instruction"
ROLE_MARKER = "episode_marker"
ROLE_CAMERA = "camera:"
ROLE_ENV_STATE = "environment_state"
ROLE_IGNORED = "ignored"

# Drop reasons (manifest keys).
DROP_NAN = "nan_position"
DROP_ORDER = "non_monotonic_stamp"
DROP_MALFORMED = "malformed"
DROP_MISSING = "missing_joints"
DROP_EMPTY = "empty_trajectory"
DROP_DECODE = "decode_error"
DROP_OUTSIDE = "outside_episodes"
DROP_SUPERSEDED = "superseded"
DROP_STALE = "stale_"
DROP_NO_NEXT = "no_next_state"
DROP_SHORT = "episode_too_short"
DROP_JOINT_GAP = "joint_gap"
DROP_BAG_FAILED = "bag_failed"
"""Messages read from a bag that failed (mid-read or later): none of them is used."""


class ConversionError(RuntimeError):
    """No bag could be converted, or the output folder cannot be written."""

    def __init__(self, message: str, manifest: Manifest | None = None) -> None:
        super().__init__(message)
        self.manifest = manifest


def _h(text: str, **bounds: object) -> dict:
    """Field metadata: help text plus ``choices``/``min``/``max``/... (enforced by
    :func:`ate_ros.core.config_fields.validate_fields`)."""
    return {"help": text, **bounds}


_POSITIVE = {"min": 0.0, "min_exclusive": True}


@dataclass
class ConversionSpec:
    """What to read from each bag and how to align it. Defaults suit the simulation's bags."""

    rate_hz: float | None = field(default=None, metadata={
        "help": "output control rate in Hz; None = the embodiment's control_rate_hz",
        "flag": "--rate", **_POSITIVE})
    joint_topic: str = field(default=T.JOINT_STATES_TOPIC, metadata=_h(
        "sensor_msgs/JointState topic"))
    action_source: str = field(default="auto", metadata={
        "help": f"one of {ACTION_SOURCES}; auto = trajectory, else chunk, else next_state",
        "choices": ACTION_SOURCES})
    command_topic: str = field(default=T.COMMAND_TOPIC, metadata=_h(
        "trajectory_msgs/JointTrajectory command topic"))
    action_chunk_topic: str = field(default=T.ACTION_CHUNK_TOPIC, metadata=_h(
        "ate_ros/ActionChunk topic"))
    camera_topics: dict[str, str] = field(default_factory=dict, metadata={
        "help": "camera name -> topic, overriding the embodiment's camera topics (default "
                "/<camera>/image_raw, or its /compressed sibling); repeatable",
        "flag": "--camera", "metavar": "NAME=TOPIC"})
    require_cameras: bool = field(default=True, metadata={
        "help": "fail a bag that lacks an embodiment camera (else warn and write no images)",
        "help_off": "convert bags lacking a camera (no images for it) instead of failing them"})
    instruction: str = field(default="", metadata=_h(
        "instruction for every episode, overriding topic and metadata"))
    instruction_topic: str = field(default=T.INSTRUCTION_TOPIC, metadata=_h(
        "std_msgs/String instruction topic"))
    env_state_topic: str = field(default=T.ENV_STATE_TOPIC, metadata=_h(
        "ate_ros/EnvironmentState topic, read into the episodes when the bag has it (empty: "
        "never)"))
    task: str = field(default="", metadata=_h("task label stored in every episode"))
    split_topic: str = field(default="", metadata=_h(
        "topic whose messages start a new episode (empty: one episode per bag)"))
    time_source: str = field(default="header", metadata={
        "help": f"one of {TIME_SOURCES}: header stamps or bag receive times",
        "choices": TIME_SOURCES})
    joint_max_age_s: float | None = field(default=None, metadata={
        "help": "max age of a joint state at a tick; None = max(2 periods, 0.1 s)",
        "flag": "--joint-max-age", "metavar": "S", **_POSITIVE})
    image_max_age_s: float | None = field(default=None, metadata={
        "help": "max age of an image at a tick; None = max(2 periods, 0.1 s)",
        "flag": "--image-max-age", "metavar": "S", **_POSITIVE})
    action_max_age_s: float | None = field(default=None, metadata={
        "help": "how long after its last point a command stays valid; None = max(2 periods, "
                "0.1 s)", "flag": "--action-max-age", "metavar": "S", **_POSITIVE})
    gap_policy: str = field(default="split", metadata={
        "help": f"one of {GAP_POLICIES}: stale ticks end the episode or are dropped",
        "flag": "--gaps", "choices": GAP_POLICIES})
    clock_jump: str = field(default="split", metadata={
        "help": f"one of {CLOCK_JUMP_POLICIES}: on a backward clock jump cut the bag or fail it",
        "choices": CLOCK_JUMP_POLICIES})
    clock_jump_tolerance_s: float = field(default=0.5, metadata=_h(
        "backward header-stamp steps larger than this are clock jumps", min=0.0))
    min_episode_frames: int = field(default=10, metadata=_h(
        "episodes with fewer frames are dropped", min=1))
    val_fraction: float = field(default=0.1, metadata={
        "help": "fraction of bags (not frames: no leakage) assigned to val/", "flag": "--split",
        "min": 0.0, "max": 1.0, "max_exclusive": True})
    seed: int = field(default=0, metadata=_h("seed of the train/val split"))
    ros_distro: str | None = field(default=None, metadata=_h(
        "typestore for types the bag does not define; None = detect, else kilted"))
    msg_dirs: list[str] = field(default_factory=list, metadata={
        "help": "folder of custom .msg files (DIR or PKG=DIR); repeatable",
        "flag": "--msg-dir", "action": "append"})
    workers: int = field(default=1, metadata=_h(
        "bags converted at once in local processes (with --ray and no address: the CPUs of the "
        "local Ray instance)", min=1))
    image_memory_mb: float = field(default=1024.0, metadata=_h(
        "raw image bytes held per bag; beyond it kept frames are re-read from the bag", min=0.0))
    compression: str | None = field(default=None, metadata={
        "help": "HDF5 compression of images (lzf, gzip or None). None by default: policy-size "
                "images are small, and lzf doubles the conversion time for 30-50 percent smaller "
                "files", "choices": (None, "lzf", "gzip")})
    overwrite: bool = field(default=False, metadata=_h("replace an existing output folder"))

    def __post_init__(self) -> None:
        validate_fields(self)
        self.msg_dirs = [str(d) for d in self.msg_dirs]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionSpec:
        return strict_from_dict(cls, data)


@dataclass
class Manifest:
    """What a conversion did, as written to ``manifest.json``.

    ``bags`` holds one report per input bag: ``path``, ``storage``, ``status`` (``ok`` or
    ``failed``), ``error``, ``warnings``, ``metadata`` (the bag's), ``topics`` (per topic of an
    opened bag: ``type``, ``role``, ``count`` (in the bag's index), ``read``, ``used``,
    ``dropped`` {reason: n}, ``rate_hz``; ``read == used + sum(dropped)``; topics no role
    reads have ``read == 0``; in a failed bag nothing is used and the messages read before it
    failed that no earlier reason dropped count as ``bag_failed``), ``frames``
    (``candidates == written + sum(dropped)``), ``episodes`` (file, split, start and end
    time, frames, instruction, task, success). ``files`` maps each output file to its SHA-256.
    """

    embodiment: str
    rate_hz: float
    spec: dict[str, Any]
    bags: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    created_unix: float | None = None
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [b for b in self.bags if b["status"] != STATUS_OK]

    @property
    def succeeded(self) -> list[dict[str, Any]]:
        return [b for b in self.bags if b["status"] == STATUS_OK]

    @property
    def episodes(self) -> list[dict[str, Any]]:
        return [e for b in self.bags for e in b.get("episodes", [])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConversionError(f"{path}: cannot read manifest ({exc})") from exc
