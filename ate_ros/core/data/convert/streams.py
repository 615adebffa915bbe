"""Reading one bag into per-topic streams: roles, the hot read loop, parsing and cleaning.

:class:`BagStreams` finds the topics each role reads (joint states, the action source, cameras,
the environment state, instruction, episode markers), reads their messages in one pass (joint
states parsed without building message objects, images kept as raw bytes within a memory
budget), and cleans them: NaN positions, clock jumps (which cut the bag into segments) and
out-of-order stamps, each dropped message with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ate_ros.core.chunk_layout import ChunkLayoutError, read_action_chunk, read_joint_trajectory
from ate_ros.core.data import resample as R
from ate_ros.core.data import topics as T
from ate_ros.core.data.bags import (
    BagError,
    BagSource,
    decode_names_block,
    header_stamp_ns,
    split_joint_state,
)
from ate_ros.core.data.convert.spec import (
    DROP_EMPTY,
    DROP_MALFORMED,
    DROP_MISSING,
    DROP_NAN,
    DROP_ORDER,
    ROLE_ACTION,
    ROLE_CAMERA,
    ROLE_ENV_STATE,
    ROLE_IGNORED,
    ROLE_INSTRUCTION,
    ROLE_JOINTS,
    ROLE_MARKER,
    ConversionSpec,
)
from ate_ros.core.embodiment import Embodiment


class Stream:
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


@dataclass(frozen=True)
class Timing:
    """The output grid and the max ages (all ns) derived from the spec and the embodiment."""

    rate: float
    period: int
    joint_age: int
    image_age: int
    action_age: int

    @classmethod
    def of(cls, spec: ConversionSpec, emb: Embodiment) -> Timing:
        rate = float(spec.rate_hz or emb.control_rate_hz)
        period = R.period_ns(rate)
        period_s = period / 1e9
        return cls(rate, period, _default_age(spec.joint_max_age_s, period_s),
                   _default_age(spec.image_max_age_s, period_s),
                   _default_age(spec.action_max_age_s, period_s))


class BagStreams:
    """The streams of one open bag, by role, as the alignment, decoding and writing stages
    use them.

    Args:
        bag: The open bag.
        emb: Embodiment the bag is converted for (joint names, cameras).
        spec: Conversion settings.
        warnings: List the stages append their warnings to (the bag's manifest entry).
    """

    def __init__(self, bag: BagSource, emb: Embodiment, spec: ConversionSpec,
                 warnings: list[str]) -> None:
        self.bag, self.emb, self.spec, self.warnings = bag, emb, spec, warnings
        self.path = bag.path
        self.timing = Timing.of(spec, emb)
        self.streams: dict[str, Stream] = {}
        self.joints = Stream(spec.joint_topic, ROLE_JOINTS)
        self.action: Stream | None = None
        self.action_source = spec.action_source
        self.action_type = ""
        self.cameras: list[tuple[Any, Stream, str]] = []  # (CameraSpec, stream, message type)
        self.env_state: Stream | None = None  # optional: payloads are (names, (E,) float32)
        self.env_state_names: tuple[str, ...] | None = None
        self.instr: Stream | None = None
        self.marker: Stream | None = None
        self.boundaries = np.zeros(0, np.int64)  # receive times where clock segments start
        self.reread = False  # some image payloads were not kept and must be re-read

    def role(self, topic: str) -> str:
        """The role a topic of the bag plays (``ignored`` when none)."""
        return self.streams[topic].role if topic in self.streams else ROLE_IGNORED

    # ----- roles ----------------------------------------------------------------------------
    def assign_roles(self) -> None:
        """Find each role's topic and check its type; BagError when a required one is absent."""
        spec, emb, bag = self.spec, self.emb, self.bag
        available = sorted(bag.topics)
        if spec.joint_topic not in bag.topics:
            raise BagError(self.path, f"no joint-state topic {spec.joint_topic} (topics: "
                                      f"{available}); set --joint-topic")
        bag.check_type(spec.joint_topic, [T.JOINT_STATE_TYPE])
        self.streams[spec.joint_topic] = self.joints

        src = spec.action_source
        if src == "auto":
            src = ("trajectory" if spec.command_topic in bag.topics else
                   "chunk" if spec.action_chunk_topic in bag.topics else "next_state")
        self.action_source = src
        if src in ("trajectory", "chunk"):
            topic = spec.command_topic if src == "trajectory" else spec.action_chunk_topic
            if topic not in bag.topics:
                raise BagError(self.path, f"action_source={src} but no {topic} in the bag "
                                          f"(topics: {available})")
            want = T.JOINT_TRAJECTORY_TYPE if src == "trajectory" else T.ACTION_CHUNK_TYPE
            self.action_type = bag.check_type(topic, [want])
            self.action = self.streams[topic] = Stream(topic, ROLE_ACTION)

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
            s = self.streams[found] = Stream(found, ROLE_CAMERA + cam.name)
            self.cameras.append((cam, s, mtype))

        et = spec.env_state_topic
        if et and et in bag.topics:
            bag.check_type(et, [T.ENV_STATE_TYPE])
            self.env_state = self.streams[et] = Stream(et, ROLE_ENV_STATE)

        it = spec.instruction_topic
        if it and it in bag.topics:
            if bag.topics[it].msgtype == T.STRING_TYPE and T.STRING_TYPE not in \
                    bag.undefined_types:
                self.instr = self.streams[it] = Stream(it, ROLE_INSTRUCTION)
            else:
                self.warnings.append(f"{it} has type {bag.topics[it].msgtype}, not "
                                     "std_msgs/String; ignored")
        if spec.split_topic:
            if spec.split_topic not in bag.topics:
                raise BagError(self.path, f"split topic {spec.split_topic} not in the bag "
                                          f"(topics: {available})")
            if bag.topics[spec.split_topic].msgtype in bag.undefined_types:
                self.warnings.append(f"{spec.split_topic}: type unknown, splitting on receive "
                                     "times only")
            self.marker = self.streams[spec.split_topic] = Stream(spec.split_topic, ROLE_MARKER)
        for topic, s in bag.topics.items():
            if self.role(topic) == ROLE_IGNORED and s.msgtype in bag.undefined_types:
                self.warnings.append(f"{topic}: unknown type {s.msgtype} without definition; "
                                     "ignored (not needed)")

    # ----- reading --------------------------------------------------------------------------
    def read(self) -> None:
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
            elif s is self.env_state:
                stamp = self._read_env_state(s, raw, t, use_header)
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

    def _deserialize_stamped(self, s: Stream, raw: bytes, msgtype: str, t: int,
                             use_header: bool) -> tuple[Any, int]:
        """(message, stamp) of a stamped message: its header stamp when ``use_header`` and
        set, else the log time ``t``. An undecodable one is recorded as a malformed drop and
        comes back as ``(None, t)``."""
        try:
            m = self.bag.deserialize(raw, msgtype)
        except Exception:
            s.reason[len(s.payload)] = DROP_MALFORMED
            s.payload.append(None)
            return None, t
        st = m.header.stamp.sec * R.NS + m.header.stamp.nanosec
        return m, (st if (use_header and st) else t)

    def _read_command(self, s: Stream, raw: bytes, t: int, use_header: bool) -> int:
        """Decode a trajectory/chunk into (tfs (P,), points (P, D)); returns its stamp."""
        idx = len(s.payload)
        # ActionChunk: header = observation time; JointTrajectory: stamp 0 means "now".
        m, stamp = self._deserialize_stamped(s, raw, self.action_type, t, use_header)
        if m is None:
            return stamp
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

    def _read_env_state(self, s: Stream, raw: bytes, t: int, use_header: bool) -> int:
        """Decode an EnvironmentState into ``(names, (E,) float32)``; returns its stamp.

        The names must stay the same within a bag (one layout per episode); messages with
        another layout than the first, mismatched lengths or NaN values are dropped.
        """
        idx = len(s.payload)
        m, stamp = self._deserialize_stamped(s, raw, T.ENV_STATE_TYPE, t, use_header)
        if m is None:
            return stamp
        names = tuple(str(n) for n in m.names)
        values = np.asarray(m.values, dtype=np.float32).reshape(-1)
        if self.env_state_names is None and len(names) == len(values):
            self.env_state_names = names  # the bag's layout: that of its first good message
        if len(names) != len(values) or names != self.env_state_names:
            s.payload.append(None)
            s.reason[idx] = DROP_MALFORMED
            return stamp
        if not np.all(np.isfinite(values)):
            s.payload.append(None)
            s.reason[idx] = DROP_NAN
            return stamp
        s.payload.append((names, values))
        return stamp

    # ----- cleaning -------------------------------------------------------------------------
    def clean(self) -> None:
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
