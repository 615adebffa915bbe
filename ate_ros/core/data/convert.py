"""Convert rosbags into ATE alignment data and policy training episodes (``ate-ros bag2dataset``).

Output (written to a temporary folder next to ``out_dir`` and renamed when complete)::

    out_dir/
      train/<bag>[_epNNN].hdf5   # episode_format.py: qpos (reference layout) + action, images,
      val/...                    #   timestamps, instruction; slots/joint names as attributes
      embodiment.yaml
      manifest.json              # per bag: topics, counts, drops with reasons, episodes, hashes

What is read from each bag (defaults in :class:`ConversionSpec`):

* joint positions: ``sensor_msgs/JointState`` on ``/joint_states``, matched by joint name (any
  order; extra joints ignored with a warning, a missing embodiment joint fails the bag);
* actions (``action_source``): ``trajectory`` = ``trajectory_msgs/JointTrajectory`` commands,
  ``chunk`` = our ``ActionChunk``; both give ``action[t]`` = the commanded position at
  ``t + period`` (the latest command's points, linearly interpolated in ``time_from_start``), the
  episode-format convention "sent at t, reached one period later". ``next_state`` (used by
  ``auto`` when the bag has no commands) sets ``action[t] = qpos[t + 1]``: what the robot
  actually reached one period later, the usual choice for teleoperation data; the last frame of
  every contiguous run has no successor and is dropped (reason ``no_next_state``);
* images: ``sensor_msgs/Image`` or ``CompressedImage`` (JPEG/PNG), on the embodiment camera's
  topic or its ``/compressed`` sibling, decoded by :mod:`ate_ros.core.data.image_decoding` (the
  decoder the nodes use; its docstring lists the encodings) and resized to the camera's size;
  only the frames the resampler keeps are decoded;
* instruction: ``ConversionSpec.instruction`` if set, else the latest ``std_msgs/String`` on
  ``/instruction`` at the episode start (or the first one inside it), else the bag's
  ``instruction`` metadata, else empty (with a warning).

Time alignment (:mod:`resample`): every stream is placed on a grid at ``rate_hz`` by header
stamp (``time_source="receive"`` uses the bag's receive times; a zero header stamp falls back to
the receive time). Each tick takes the newest message at or before it that is at most the
stream's max age old. Ticks with a stale stream are dropped (``gap_policy="drop"``) or end the
episode (``"split"``, default). Header-less messages (instruction, split markers) are mapped
onto the header clock with the median offset between the joint stream's header and receive
times. A header stamp that steps back by more than ``clock_jump_tolerance_s`` is a clock jump:
the bag is cut there (``clock_jump="split"``) or fails (``"error"``); smaller backward steps are
out-of-order messages and are dropped with a reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ate_ros.core.chunk_layout import ChunkLayoutError, read_action_chunk, read_joint_trajectory
from ate_ros.core.data import resample as R
from ate_ros.core.data import topics as T
from ate_ros.core.data.bags import (
    METADATA_INSTRUCTION,
    BagError,
    BagSource,
    bag_storage,
    decode_names_block,
    discover_bags,
    header_stamp_ns,
    split_joint_state,
)
from ate_ros.core.data.episode_format import (
    EMBODIMENT_FILE,
    MANIFEST,
    SPLITS,
    Episode,
    write_episode,
)
from ate_ros.core.data.image_decoding import decode_image_message, resize_image
from ate_ros.core.dataclass_io import strict_from_dict
from ate_ros.core.embodiment import Embodiment, load_embodiment

logger = logging.getLogger(__name__)

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


class ConversionError(RuntimeError):
    """No bag could be converted, or the output folder cannot be written."""

    def __init__(self, message: str, manifest: Manifest | None = None) -> None:
        super().__init__(message)
        self.manifest = manifest


def _h(text: str) -> dict:
    return {"help": text}


@dataclass
class ConversionSpec:
    """What to read from each bag and how to align it. Defaults suit the simulation's bags."""

    rate_hz: float | None = field(default=None, metadata=_h(
        "output control rate; None = the embodiment's control_rate_hz"))
    joint_topic: str = field(default=T.JOINT_STATES_TOPIC, metadata=_h(
        "sensor_msgs/JointState topic"))
    action_source: str = field(default="auto", metadata=_h(
        f"one of {ACTION_SOURCES}; auto = trajectory, else chunk, else next_state"))
    command_topic: str = field(default=T.COMMAND_TOPIC, metadata=_h(
        "trajectory_msgs/JointTrajectory command topic"))
    action_chunk_topic: str = field(default=T.ACTION_CHUNK_TOPIC, metadata=_h(
        "ate_ros/ActionChunk topic"))
    camera_topics: dict[str, str] = field(default_factory=dict, metadata=_h(
        "camera name -> topic, overriding the embodiment's camera topics"))
    require_cameras: bool = field(default=True, metadata=_h(
        "fail a bag that lacks an embodiment camera (else warn and write no images)"))
    instruction: str = field(default="", metadata=_h(
        "instruction for every episode, overriding topic and metadata"))
    instruction_topic: str = field(default=T.INSTRUCTION_TOPIC, metadata=_h(
        "std_msgs/String instruction topic"))
    task: str = field(default="", metadata=_h("task label stored in every episode"))
    split_topic: str = field(default="", metadata=_h(
        "topic whose messages start a new episode (empty: one episode per bag)"))
    time_source: str = field(default="header", metadata=_h(
        f"one of {TIME_SOURCES}: header stamps or bag receive times"))
    joint_max_age_s: float | None = field(default=None, metadata=_h(
        "max age of a joint state at a tick; None = max(2 periods, 0.1 s)"))
    image_max_age_s: float | None = field(default=None, metadata=_h(
        "max age of an image at a tick; None = max(2 periods, 0.1 s)"))
    action_max_age_s: float | None = field(default=None, metadata=_h(
        "how long after its last point a command stays valid; None = max(2 periods, 0.1 s)"))
    gap_policy: str = field(default="split", metadata=_h(
        f"one of {GAP_POLICIES}: stale ticks end the episode or are dropped"))
    clock_jump: str = field(default="split", metadata=_h(
        f"one of {CLOCK_JUMP_POLICIES}: on a backward clock jump cut the bag or fail it"))
    clock_jump_tolerance_s: float = field(default=0.5, metadata=_h(
        "backward header-stamp steps larger than this are clock jumps"))
    min_episode_frames: int = field(default=10, metadata=_h(
        "episodes with fewer frames are dropped"))
    val_fraction: float = field(default=0.1, metadata=_h(
        "fraction of bags (not frames: no leakage) assigned to val/"))
    seed: int = field(default=0, metadata=_h("seed of the train/val split"))
    ros_distro: str | None = field(default=None, metadata=_h(
        "typestore for types the bag does not define; None = detect, else kilted"))
    msg_dirs: list[str] = field(default_factory=list, metadata=_h(
        "extra .msg folders (DIR or PKG=DIR)"))
    workers: int = field(default=1, metadata=_h("bags converted in parallel processes"))
    image_memory_mb: float = field(default=1024.0, metadata=_h(
        "raw image bytes held per bag; beyond it kept frames are re-read from the bag"))
    compression: str | None = field(default=None, metadata=_h(
        "HDF5 compression of images (lzf, gzip or None). None by default: policy-size images "
        "are small, and lzf doubles the conversion time for 30-50 percent smaller files"))
    overwrite: bool = field(default=False, metadata=_h("replace an existing output folder"))

    def __post_init__(self) -> None:
        checks = [("action_source", ACTION_SOURCES), ("time_source", TIME_SOURCES),
                  ("gap_policy", GAP_POLICIES), ("clock_jump", CLOCK_JUMP_POLICIES)]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        for name in ("joint_max_age_s", "image_max_age_s", "action_max_age_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive (or None for the default), got {v}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.min_episode_frames < 1:
            raise ValueError(f"min_episode_frames must be at least 1, got "
                             f"{self.min_episode_frames}")
        if self.clock_jump_tolerance_s < 0:
            raise ValueError("clock_jump_tolerance_s must not be negative")
        if self.compression not in (None, "lzf", "gzip"):
            raise ValueError(f"compression must be lzf, gzip or None, got {self.compression!r}")
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
    ``failed``), ``error``, ``warnings``, ``topics`` (per topic: ``type``, ``role``, ``read``,
    ``used``, ``dropped`` {reason: n}, ``rate_hz``; ``read == used + sum(dropped)``),
    ``frames`` (``candidates == written + sum(dropped)``), ``episodes`` (file, split, start and
    end time, frames, instruction). ``files`` maps each output file to its SHA-256.
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


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# One bag
# ---------------------------------------------------------------------------------------------
class _Stream:
    """Messages of one topic: stamps, receive times, payloads, and which ones were dropped."""

    def __init__(self, topic: str, role: str) -> None:
        self.topic, self.role = topic, role
        self.stamps: list[int] | np.ndarray = []
        self.recv: list[int] | np.ndarray = []
        self.payload: list[Any] = []
        self.read = 0
        self.reason: dict[int, str] = {}  # message index -> drop reason (before alignment)
        self.used: set[int] = set()

    def finish(self) -> None:
        self.stamps = np.asarray(self.stamps, dtype=np.int64)
        self.recv = np.asarray(self.recv, dtype=np.int64)

    def keep_mask(self) -> np.ndarray:
        keep = np.ones(len(self.stamps), dtype=bool)
        if self.reason:
            keep[list(self.reason)] = False
        return keep

    def drop(self, indices: Sequence[int] | np.ndarray, reason: str) -> None:
        for i in np.asarray(indices, dtype=np.int64).tolist():
            self.reason.setdefault(i, reason)


def _default_age(spec_value: float | None, period_s: float) -> int:
    return int(round((spec_value if spec_value is not None else max(2 * period_s, 0.1)) * 1e9))


class _BagConverter:
    """Reads one bag, aligns its streams and writes its episodes into a staging folder."""

    def __init__(self, path: Path, name: str, emb: Embodiment, spec: ConversionSpec,
                 stage: Path) -> None:
        self.path, self.name, self.emb, self.spec, self.stage = path, name, emb, spec, stage
        self.rate = float(spec.rate_hz or emb.control_rate_hz)
        self.period = R.period_ns(self.rate)
        period_s = self.period / 1e9
        self.joint_age = _default_age(spec.joint_max_age_s, period_s)
        self.image_age = _default_age(spec.image_max_age_s, period_s)
        self.action_age = _default_age(spec.action_max_age_s, period_s)
        self.warnings: list[str] = []
        self.report: dict[str, Any] = {
            "path": str(path), "name": name, "storage": bag_storage(path),
            "status": STATUS_FAILED, "error": "", "warnings": self.warnings, "topics": {},
            "frames": {"candidates": 0, "written": 0, "dropped": {}}, "episodes": [],
            "metadata": {}}
        self.written: list[Path] = []

    # ----- reading --------------------------------------------------------------------------
    def _setup(self, bag: BagSource) -> None:
        spec, emb = self.spec, self.emb
        self.bag = bag
        self.report["ros_distro"] = bag.distro
        self.report["metadata"] = dict(bag.metadata)
        self.warnings.extend(bag.warnings)
        available = sorted(bag.topics)
        if spec.joint_topic not in bag.topics:
            raise BagError(self.path, f"no joint-state topic {spec.joint_topic} (topics: "
                                      f"{available}); set --joint-topic")
        bag.check_type(spec.joint_topic, [T.JOINT_STATE_TYPE])
        self.joints = _Stream(spec.joint_topic, ROLE_JOINTS)
        self.streams: dict[str, _Stream] = {spec.joint_topic: self.joints}

        src = spec.action_source
        if src == "auto":
            src = ("trajectory" if spec.command_topic in bag.topics else
                   "chunk" if spec.action_chunk_topic in bag.topics else "next_state")
        self.action_source = src
        self.report["action_source"] = src
        self.action: _Stream | None = None
        if src in ("trajectory", "chunk"):
            topic = spec.command_topic if src == "trajectory" else spec.action_chunk_topic
            if topic not in bag.topics:
                raise BagError(self.path, f"action_source={src} but no {topic} in the bag "
                                          f"(topics: {available})")
            want = T.JOINT_TRAJECTORY_TYPE if src == "trajectory" else T.ACTION_CHUNK_TYPE
            self.action_type = bag.check_type(topic, [want])
            self.action = self.streams[topic] = _Stream(topic, ROLE_ACTION)

        self.cameras: list[tuple[Any, _Stream, str]] = []
        for cam in emb.cameras:
            topic = spec.camera_topics.get(cam.name) or T.absolute_topic(cam.topic)
            options = [topic] if topic.endswith("/" + T.COMPRESSED_SUFFIX) else [
                topic, f"{topic}/{T.COMPRESSED_SUFFIX}"]
            found = next((t for t in options if t in bag.topics), None)
            if found is None:
                msg = (f"camera {cam.name!r}: none of {options} in the bag (topics: "
                       f"{available}); map it with camera_topics / --camera NAME=TOPIC")
                if spec.require_cameras:
                    raise BagError(self.path, msg)
                self.warnings.append(msg + "; episodes written without it")
                continue
            mtype = bag.check_type(found, [T.IMAGE_TYPE, T.COMPRESSED_IMAGE_TYPE])
            s = self.streams[found] = _Stream(found, ROLE_CAMERA + cam.name)
            self.cameras.append((cam, s, mtype))

        self.instr: _Stream | None = None
        it = spec.instruction_topic
        if it and it in bag.topics:
            if bag.topics[it].msgtype == T.STRING_TYPE and T.STRING_TYPE not in \
                    bag.undefined_types:
                self.instr = self.streams[it] = _Stream(it, ROLE_INSTRUCTION)
            else:
                self.warnings.append(f"{it} has type {bag.topics[it].msgtype}, not "
                                     "std_msgs/String; ignored")
        self.marker: _Stream | None = None
        if spec.split_topic:
            if spec.split_topic not in bag.topics:
                raise BagError(self.path, f"split topic {spec.split_topic} not in the bag "
                                          f"(topics: {available})")
            if bag.topics[spec.split_topic].msgtype in bag.undefined_types:
                self.warnings.append(f"{spec.split_topic}: type unknown, splitting on receive "
                                     "times only")
            self.marker = self.streams[spec.split_topic] = _Stream(spec.split_topic, ROLE_MARKER)
        for topic, s in bag.topics.items():
            role = self.streams[topic].role if topic in self.streams else ROLE_IGNORED
            self.report["topics"][topic] = {"type": s.msgtype, "role": role, "count": s.count}
            if role == ROLE_IGNORED and s.msgtype in bag.undefined_types:
                self.warnings.append(f"{topic}: unknown type {s.msgtype} without definition; "
                                     "ignored (not needed)")

    def _read(self) -> None:
        """Pass 1 over the bag: the hot loop (joint states at 100+ Hz, images)."""
        bag, spec = self.bag, self.spec
        ros1 = bag.ros1
        use_header = spec.time_source == "header"
        js = self.joints
        j_stamps, j_recv, j_vals = js.stamps, js.recv, js.payload
        joint_topic = js.topic
        perm_cache: dict[bytes, np.ndarray | None] = {}
        cam_by_topic = {s.topic: s for _, s, _ in self.cameras}
        budget = int(self.spec.image_memory_mb * 1e6)
        held = 0
        self.reread = False
        zero_stamps = 0
        frombuffer = np.frombuffer
        for topic, t, raw in bag.messages(self.streams):
            if topic == joint_topic:
                js.read += 1
                parsed = split_joint_state(raw, ros1)
                if parsed is None:
                    parsed = self._joint_generic(raw)
                stamp, block, off, count = parsed
                perm = perm_cache.get(block)
                if perm is None:
                    perm = perm_cache[block] = self._joint_perm(block, ros1)
                if count != perm[1]:
                    j_vals.append(None)
                    js.reason[len(j_vals) - 1] = DROP_MALFORMED
                else:
                    values = frombuffer(raw, "<f8", count, off) if isinstance(off, int) else off
                    j_vals.append(values[perm[0]])
                if not use_header:
                    stamp = t
                elif stamp == 0:
                    stamp, zero_stamps = t, zero_stamps + 1
                j_stamps.append(stamp)
                j_recv.append(t)
                continue
            s = self.streams[topic]
            s.read += 1
            if topic in cam_by_topic:
                stamp = header_stamp_ns(raw, ros1) if use_header else t
                if stamp == 0:
                    stamp, zero_stamps = t, zero_stamps + 1
                if held + len(raw) <= budget:
                    s.payload.append(raw)
                    held += len(raw)
                else:
                    s.payload.append(None)  # re-read later if a kept frame needs it
                    self.reread = True
            elif s is self.action:
                stamp = self._read_command(s, raw, t, use_header)
            else:  # instruction / marker: header-less, mapped to the header clock later
                stamp = t
                if s is self.instr:
                    try:
                        s.payload.append(bag.deserialize(raw, T.STRING_TYPE).data)
                    except Exception:
                        s.payload.append(None)
                        s.reason[len(s.payload) - 1] = DROP_MALFORMED
                else:
                    s.payload.append(None)
            s.stamps.append(stamp)
            s.recv.append(t)
        if zero_stamps:
            self.warnings.append(f"{zero_stamps} messages with a zero header stamp used their "
                                 "receive time")
        for s in self.streams.values():
            s.finish()
        if js.read == 0:
            raise BagError(self.path, f"{js.topic} has no messages (empty bag?)")

    def _joint_generic(self, raw: bytes) -> tuple[int, bytes, np.ndarray, int]:
        """Fallback for layouts the fast parser does not handle (e.g. big-endian CDR)."""
        m = self.bag.deserialize(raw, T.JOINT_STATE_TYPE)
        stamp = m.header.stamp.sec * R.NS + m.header.stamp.nanosec
        key = json.dumps(list(m.name)).encode()
        return stamp, b"json:" + key, np.asarray(m.position, dtype=np.float64), len(m.position)

    def _joint_perm(self, block: bytes, ros1: bool) -> tuple[np.ndarray, int]:
        """(embodiment order -> message column) for a name list; errors on missing joints."""
        names = (json.loads(block[5:]) if block.startswith(b"json:")
                 else decode_names_block(block, ros1))
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.emb.joint_names if n not in index]
        if missing:
            raise BagError(self.path, f"{self.joints.topic}: embodiment {self.emb.name!r} joints "
                                      f"{missing} missing from the message (it has {names}); "
                                      "use the matching embodiment YAML")
        extra = self.emb.unknown_joints(names)
        if extra:
            self.warnings.append(f"{self.joints.topic}: joints {extra} are not in embodiment "
                                 f"{self.emb.name!r}; ignored")
        return np.array([index[n] for n in self.emb.joint_names], dtype=np.int64), len(names)

    def _read_command(self, s: _Stream, raw: bytes, t: int, use_header: bool) -> int:
        """Decode a trajectory/chunk into (tfs (P,), points (P, D)); returns its stamp."""
        idx = len(s.payload)
        try:
            m = self.bag.deserialize(raw, self.action_type)
        except Exception:
            s.payload.append(None)
            s.reason[idx] = DROP_MALFORMED
            return t
        # ActionChunk: header = observation time; JointTrajectory: stamp 0 means "now".
        st = m.header.stamp.sec * R.NS + m.header.stamp.nanosec
        stamp = st if (use_header and st) else t
        try:  # a JointTrajectory, or an ActionChunk (flat or, in older bags, legacy layout)
            chunk = (read_joint_trajectory(m) if self.action_source == "trajectory"
                     else read_action_chunk(m))
        except ChunkLayoutError:
            s.payload.append(None)
            s.reason[idx] = DROP_MALFORMED
            return stamp
        names, all_pts, tfs = chunk.joint_names, chunk.positions, chunk.times
        index = {n: i for i, n in enumerate(names)}
        if any(n not in index for n in self.emb.joint_names):
            s.payload.append(None)
            s.reason[idx] = DROP_MISSING
            return stamp
        if not len(tfs):
            s.payload.append(None)
            s.reason[idx] = DROP_EMPTY
            return stamp
        pts = all_pts.reshape(len(tfs), len(names))[:, [index[n] for n in self.emb.joint_names]]
        if not np.all(np.isfinite(pts)) or (len(tfs) > 1 and np.any(np.diff(tfs) <= 0)):
            s.payload.append(None)
            s.reason[idx] = DROP_NAN if not np.all(np.isfinite(pts)) else DROP_MALFORMED
            return stamp
        s.payload.append((tfs, pts))
        return stamp

    # ----- cleaning -------------------------------------------------------------------------
    def _clean(self) -> None:
        """NaN positions, clock jumps and out-of-order stamps."""
        js = self.joints
        for i, v in enumerate(js.payload):
            if v is not None and not np.all(np.isfinite(v)):
                js.reason.setdefault(i, DROP_NAN)
        n_nan = sum(1 for r in js.reason.values() if r == DROP_NAN)
        if n_nan:
            self.warnings.append(f"{js.topic}: {n_nan} messages with NaN/inf positions dropped")
        keep = js.keep_mask()
        kept = np.flatnonzero(keep)
        if len(kept) == 0:
            raise BagError(self.path, f"no usable message on {js.topic} (dropped: "
                                      f"{dict(Counter(js.reason.values()))})")
        # Clock jumps are found on the joint stream (the master clock) and cut every stream at
        # the same receive time, so each clock segment is self-consistent.
        jumps = R.backward_jumps(js.stamps[kept], int(self.spec.clock_jump_tolerance_s * 1e9))
        self.boundaries = js.recv[kept[jumps]] if len(jumps) else np.zeros(0, np.int64)
        if len(jumps):
            desc = ", ".join(
                f"{js.stamps[kept[j - 1]] / 1e9:.3f}s -> {js.stamps[kept[j]] / 1e9:.3f}s"
                for j in jumps[:3])
            if self.spec.clock_jump == "error":
                raise BagError(self.path, f"{js.topic}: header stamps jump backwards ({desc}); "
                                          "use clock_jump=split or time_source=receive")
            self.warnings.append(f"{len(jumps)} backward clock jump(s) on {js.topic} ({desc}); "
                                 "bag cut into separate episodes there")
        # Header-less streams: map receive time onto the header clock of the joint stream.
        offset = int(np.median(js.stamps[kept] - js.recv[kept])) if len(kept) else 0
        for s in self.streams.values():
            s.segment = np.searchsorted(self.boundaries, s.recv, side="right")
            if s.role in (ROLE_INSTRUCTION, ROLE_MARKER) and self.spec.time_source == "header":
                s.stamps = s.recv + offset
            if s.role in (ROLE_INSTRUCTION, ROLE_MARKER):
                continue
            k = s.keep_mask()
            idx = np.flatnonzero(k)
            ok = R.increasing_mask(s.stamps[idx], s.segment[idx])
            if not ok.all():
                s.drop(idx[~ok], DROP_ORDER)
                self.warnings.append(f"{s.topic}: {int((~ok).sum())} messages with stamps at or "
                                     "before an earlier one (out of order) dropped")

    # ----- alignment ------------------------------------------------------------------------
    def _align(self) -> list[dict[str, Any]]:
        """Grid ticks, freshness per stream, and the episodes (lists of tick rows)."""
        js, spec = self.joints, self.spec
        frames_dropped: Counter[str] = Counter()
        candidates = 0
        episodes: list[dict[str, Any]] = []
        marker_t = (self.marker.stamps[self.marker.keep_mask()] if self.marker is not None
                    else np.zeros(0, np.int64))
        kept_by_stream = {t: np.flatnonzero(s.keep_mask()) for t, s in self.streams.items()}
        n_seg = len(self.boundaries) + 1
        for seg in range(n_seg):
            jk = kept_by_stream[js.topic]
            jk = jk[js.segment[jk] == seg]
            if len(jk) == 0:
                continue
            seg_rows: list[dict[str, np.ndarray]] = []
            prev_end = None
            for a, b in R.split_on_gaps(js.stamps[jk], self.joint_age):
                start, end = int(js.stamps[jk[a]]), int(js.stamps[jk[b - 1]])
                if prev_end is not None:
                    gap_s = (start - prev_end) / 1e9
                    if gap_s > FORWARD_JUMP_S:
                        self.warnings.append(f"{js.topic}: forward clock jump of {gap_s:.1f} s")
                    else:  # ticks the previous grid would have had before this run starts
                        missed = max(0, -(-(start - prev_end) // self.period) - 1)
                        frames_dropped[DROP_JOINT_GAP] += missed
                        candidates += missed
                grid = R.make_grid(start, end, self.period)
                prev_end = int(grid[-1])
                candidates += len(grid)
                row = {"t": grid, "valid": np.ones(len(grid), bool),
                       "reason": np.full(len(grid), "", dtype=object)}
                for topic, s in self.streams.items():
                    if s.role in (ROLE_INSTRUCTION, ROLE_MARKER):
                        continue
                    kk = kept_by_stream[topic]
                    kk = kk[s.segment[kk] == seg]
                    if s is self.action:
                        # A command stays valid until its last point plus the max age.
                        ages = np.array([int(s.payload[i][0][-1] * 1e9) for i in kk],
                                        dtype=np.int64) + self.action_age
                        idx, fresh = R.asof(s.stamps[kk], grid, ages)
                    else:
                        age = self.joint_age if s is js else self.image_age
                        idx, fresh = R.asof(s.stamps[kk], grid, age)
                    row[topic] = np.where(idx >= 0, kk[np.maximum(idx, 0)], -1)
                    newly = row["valid"] & ~fresh
                    row["reason"][newly] = DROP_STALE + (s.role.replace(ROLE_CAMERA, "")
                                                         if s.role.startswith(ROLE_CAMERA)
                                                         else s.role)
                    row["valid"] &= fresh
                if self.action_source == "next_state":
                    nxt = np.zeros(len(grid), bool)
                    nxt[:-1] = row["valid"][1:]
                    newly = row["valid"] & ~nxt
                    row["reason"][newly] = DROP_NO_NEXT
                    row["next"] = np.append(row[js.topic][1:], -1)
                    row["valid"] &= nxt
                row["marker"] = np.searchsorted(marker_t, grid, side="right")
                seg_rows.append(row)
            # Episodes: contiguous valid ticks (split) or all valid ticks of the segment (drop),
            # in both cases cut at episode markers.
            groups: list[list[tuple[int, np.ndarray]]] = []
            by_marker: dict[int, list[tuple[int, np.ndarray]]] = {}
            for r_i, row in enumerate(seg_rows):
                frames_dropped.update(row["reason"][~row["valid"]].tolist())
                for mk in np.unique(row["marker"]).tolist():
                    sel = row["valid"] & (row["marker"] == mk)
                    if spec.gap_policy == "split":
                        groups.extend([(r_i, np.arange(a, b))] for a, b in R.true_runs(sel))
                    elif sel.any():
                        by_marker.setdefault(mk, []).append((r_i, np.flatnonzero(sel)))
            groups.extend(by_marker.values())
            for parts in groups:
                n = sum(len(t) for _, t in parts)
                if n == 0:
                    continue
                if n < spec.min_episode_frames:
                    frames_dropped[DROP_SHORT] += n
                    continue
                episodes.append({"segment": seg, "parts": [(seg_rows[r], t) for r, t in parts]})
        self.report["frames"]["candidates"] = candidates
        self.report["frames"]["dropped"] = dict(frames_dropped)
        return episodes

    # ----- images ---------------------------------------------------------------------------
    def _decode_needed(self, episodes: list[dict[str, Any]]
                       ) -> list[tuple[_Stream, int, Exception]]:
        """Decode each image message a kept tick uses, once; returns the failures (dropped)."""
        need: dict[str, set[int]] = {s.topic: set() for _, s, _ in self.cameras}
        for ep in episodes:
            for row, ticks in ep["parts"]:
                for topic in need:
                    need[topic].update(row[topic][ticks].tolist())
        if self.reread and any(need.values()):
            want = {t: {i for i in ids if self.streams[t].payload[i] is None}
                    for t, ids in need.items()}
            counters = dict.fromkeys(want, -1)
            for topic, _, raw in self.bag.messages([t for t, w in want.items() if w]):
                counters[topic] += 1
                if counters[topic] in want[topic]:
                    self.streams[topic].payload[counters[topic]] = raw
        self.images: dict[tuple[str, int], np.ndarray] = {}
        failed = []
        for cam, s, mtype in self.cameras:
            for i in sorted(need[s.topic]):
                try:
                    msg = self.bag.deserialize(s.payload[i], mtype)
                    img = decode_image_message(msg, mtype == T.COMPRESSED_IMAGE_TYPE)
                    self.images[(s.topic, i)] = resize_image(img, cam.width, cam.height)
                except Exception as exc:
                    failed.append((s, i, exc))
        for s, i, _exc in failed:
            s.drop([i], DROP_DECODE)
        if failed:
            s, i, exc = failed[0]
            self.warnings.append(f"{len(failed)} images could not be decoded (first: {s.topic} "
                                 f"#{i}: {exc}); dropped")
        return failed

    # ----- writing --------------------------------------------------------------------------
    def _instruction_at(self, t0: int, t1: int) -> str:
        if self.spec.instruction:
            return self.spec.instruction
        s = self.instr
        if s is not None and len(s.stamps):
            k = np.flatnonzero(s.keep_mask())
            before = k[s.stamps[k] <= t0]
            inside = k[(s.stamps[k] > t0) & (s.stamps[k] <= t1)]
            pick = before[-1] if len(before) else (inside[0] if len(inside) else None)
            if pick is not None:
                return str(s.payload[pick])
        return self.bag.metadata.get(METADATA_INSTRUCTION, "")

    def _write(self, episodes: list[dict[str, Any]]) -> None:
        js = self.joints
        multi = len(episodes) > 1
        for e_i, ep in enumerate(episodes):
            t = np.concatenate([row["t"][ticks] for row, ticks in ep["parts"]])
            jidx = np.concatenate([row[js.topic][ticks] for row, ticks in ep["parts"]])
            qpos = np.stack([js.payload[i] for i in jidx]).astype(np.float32)
            js.used.update(jidx.tolist())
            if self.action_source == "next_state":
                nidx = np.concatenate([row["next"][ticks] for row, ticks in ep["parts"]])
                action = np.stack([js.payload[i] for i in nidx]).astype(np.float32)
                js.used.update(nidx.tolist())
            else:
                s = self.action
                aidx = np.concatenate([row[s.topic][ticks] for row, ticks in ep["parts"]])
                action = np.stack([
                    R.interpolate_points(s.payload[i][0], s.payload[i][1],
                                         (tick + self.period - s.stamps[i]) / 1e9)
                    for i, tick in zip(aidx.tolist(), t.tolist(), strict=True)
                ]).astype(np.float32)
                s.used.update(aidx.tolist())
            images = {}
            for cam, s, _ in self.cameras:
                cidx = np.concatenate([row[s.topic][ticks] for row, ticks in ep["parts"]])
                images[cam.name] = np.stack([self.images[(s.topic, i)] for i in cidx.tolist()])
                s.used.update(cidx.tolist())
            instruction = self._instruction_at(int(t[0]), int(t[-1]))
            if not instruction:
                self.warnings.append(f"episode {e_i}: no instruction (no "
                                     f"{self.spec.instruction_topic} message, no metadata, "
                                     "no --instruction)")
            fname = f"{self.name}_ep{e_i:03d}.hdf5" if multi else f"{self.name}.hdf5"
            episode = Episode(
                qpos=qpos, action=action, timestamps=t / 1e9, images=images,
                instruction=instruction, task=self.spec.task, embodiment=self.emb.name,
                joint_names=list(self.emb.joint_names), slots=self.emb.slots,
                rate_hz=self.rate, source=str(self.path))
            out = self.stage / fname
            self.written.append(out)
            write_episode(out, episode, compression=self.spec.compression)
            self.report["episodes"].append({
                "file": fname, "frames": len(t), "start": float(t[0] / 1e9),
                "end": float(t[-1] / 1e9), "instruction": instruction,
                "sha256": sha256_file(out)})
            self.report["frames"]["written"] += len(t)
            if not np.all(self.emb.within_limits(qpos, tol=1e-6)):
                self.warnings.append(f"{fname}: joint positions outside the embodiment limits")

    def _account(self) -> None:
        """Per topic: read = used + dropped, with a reason for every dropped message."""
        spans = [(e["start"], e["end"]) for e in self.report["episodes"]]
        for topic, s in self.streams.items():
            entry = self.report["topics"][topic]
            dropped: Counter[str] = Counter(s.reason.values())
            if s.role in (ROLE_INSTRUCTION, ROLE_MARKER):
                used = s.read - sum(dropped.values())
            else:
                used = len(s.used)
                keep = np.flatnonzero(s.keep_mask())
                stamps = s.stamps[keep] / 1e9 if len(keep) else np.zeros(0)
                age = (self.image_age if s.role.startswith(ROLE_CAMERA) else self.joint_age) / 1e9
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

    def run(self) -> dict[str, Any]:
        try:
            with BagSource(self.path, self.spec.ros_distro, self.spec.msg_dirs) as bag:
                self._setup(bag)
                self._read()
                self._clean()
                for _ in range(3):  # decode failures drop frames, so align again
                    episodes = self._align()
                    if not episodes:
                        break
                    if not self._decode_needed(episodes):
                        break
                else:
                    raise BagError(self.path, "images keep failing to decode")
                if not episodes:
                    raise BagError(self.path, "no episode left after time alignment (frames "
                                              f"dropped: {self.report['frames']['dropped']}); "
                                              "check --rate and the max ages, or the topics")
                self._write(episodes)
                self._account()
            self.report["status"] = STATUS_OK
        except BagError as exc:
            self._fail(exc.reason)
        except Exception as exc:  # keep converting the other bags; the manifest records it
            logger.exception("unexpected error converting %s", self.path)
            self._fail(f"internal error ({type(exc).__name__}: {exc})")
        return self.report

    def _fail(self, reason: str) -> None:
        self.report["status"] = STATUS_FAILED
        self.report["error"] = reason
        self.report["episodes"] = []
        for p in self.written:  # no partial output from a failed bag
            p.unlink(missing_ok=True)
        logger.error("%s: %s", self.path, reason)


def convert_bag(path: str | Path, name: str, embodiment: Embodiment, spec: ConversionSpec,
                stage_dir: str | Path) -> dict[str, Any]:
    """Convert one bag into episode files under ``stage_dir``; never raises for bag problems.

    Returns:
        The bag's manifest entry (``status`` is ``"ok"`` or ``"failed"`` with ``error``).
    """
    return _BagConverter(Path(path), name, embodiment, spec, Path(stage_dir)).run()


# ---------------------------------------------------------------------------------------------
# Many bags
# ---------------------------------------------------------------------------------------------
def _unique_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], Counter()
    for p in paths:
        base = (p.stem if p.suffix in (".bag", ".mcap", ".db3") else p.name) or "bag"
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def assign_splits(names: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Bag name -> ``"train"``/``"val"``; deterministic for a seed, val never empties train.

    With ``val_fraction > 0`` and at least two bags, val gets at least one bag.
    """
    order = sorted(names)
    n_val = int(round(val_fraction * len(order)))
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    else:
        n_val = 0
    rng = np.random.default_rng(seed)
    val = set(rng.choice(order, size=n_val, replace=False).tolist()) if n_val else set()
    return {n: ("val" if n in val else "train") for n in names}


def convert_bags(inputs: Sequence[str | Path], embodiment: str | Path | Embodiment,
                 out_dir: str | Path, spec: ConversionSpec | None = None,
                 now: float | None = None) -> Manifest:
    """Convert bags into a dataset folder (see the module docstring); the core of bag2dataset.

    Args:
        inputs: Bags, folders of bags or glob patterns.
        embodiment: Embodiment, YAML path or name under ``config/embodiments``.
        out_dir: Dataset folder to create (must not exist unless ``spec.overwrite``).
        spec: Conversion settings.
        now: Wall-clock time recorded in the manifest (``None``: not recorded).

    Returns:
        The manifest. Bags that failed are listed with their error; the caller decides whether
        that is fatal (``ate-ros bag2dataset`` exits 1 unless ``--keep-going``).

    Raises:
        ConversionError: No bag converted (nothing is written; ``.manifest`` has the reports),
            or ``out_dir`` exists.
        BagError: An input is not a bag.
    """
    emb = load_embodiment(embodiment)
    spec = spec or ConversionSpec()
    out = Path(out_dir)
    if out.exists() and not spec.overwrite:
        raise ConversionError(f"{out} exists already; choose a new --out or pass --overwrite")
    bags = discover_bags(inputs)
    if not bags:
        raise ConversionError("no bags given")
    rate = float(spec.rate_hz or emb.control_rate_hz)
    manifest = Manifest(embodiment=emb.name, rate_hz=rate, spec=spec.to_dict(), created_unix=now)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    stage = tmp / STAGE_DIR
    stage.mkdir(parents=True)
    try:
        names = _unique_names(bags)
        jobs = list(zip(bags, names, strict=True))
        workers = min(spec.workers, len(jobs))
        if workers <= 1:
            reports = [convert_bag(p, n, emb, spec, stage) for p, n in jobs]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the caller may hold threads (rclpy, torch) that fork would copy.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(convert_bag, p, n, emb, spec, stage) for p, n in jobs]
                reports = [f.result() for f in futures]
        manifest.bags = reports
        if not manifest.succeeded:
            errors = "; ".join(f"{b['path']}: {b['error']}" for b in reports)
            raise ConversionError(f"no bag could be converted ({errors})", manifest)
        split_of = assign_splits([b["name"] for b in manifest.succeeded], spec.val_fraction,
                                 spec.seed)
        for split in SPLITS:
            (tmp / split).mkdir()
            manifest.splits[split] = []
        for b in manifest.succeeded:
            split = split_of[b["name"]]
            b["split"] = split
            for e in b["episodes"]:
                rel = f"{split}/{e['file']}"
                (stage / e["file"]).rename(tmp / rel)
                e["file"] = rel
                e["split"] = split
                manifest.files[rel] = e.pop("sha256")
                manifest.splits[split].append(rel)
        shutil.rmtree(stage)
        emb.to_yaml(tmp / EMBODIMENT_FILE)
        manifest.files[EMBODIMENT_FILE] = sha256_file(tmp / EMBODIMENT_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2, default=str))
        if out.exists():  # overwrite: swap in the new dataset, then delete the old one
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_ep = len(manifest.episodes)
    logger.info("%s: %d episodes from %d/%d bags (%d failed)", out, n_ep,
                len(manifest.succeeded), len(manifest.bags), len(manifest.failed))
    return manifest
