"""Open ROS 1 and ROS 2 bags with rosbags and find their topics, types and metadata.

Accepted inputs (:func:`discover_bags`): a ROS 1 ``.bag`` file, a rosbag2 folder (sqlite3 or
MCAP, any metadata version rosbags reads), a bare ``.mcap`` / ``.db3`` file, a folder holding
such bags, or a glob pattern.

Types (:class:`BagSource`): definitions embedded in the bag win (MCAP, ROS 1 and rosbag2 v9
sqlite3 bags carry them); types the bag does not define come from the typestore of the bag's
ROS distribution (``ros_distro`` in rosbag2 metadata when it names a real distribution, Noetic
for ROS 1, else Kilted, or ``distro`` when given) plus this package's ``msg/`` and the user's
``--msg-dir`` folders.
"""

from __future__ import annotations

import glob
import json
import logging
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ate_ros.core.data import topics as T
from ate_ros.core.data.typestores import (
    DEFAULT_DISTRO,
    ROS1_DISTRO,
    TypestoreError,
    available_distros,
    make_typestore,
    register_missing,
)

logger = logging.getLogger(__name__)

ROS1_SUFFIX = ".bag"
ROSBAG2_METADATA = "metadata.yaml"
RAW_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
# Bag metadata keys this package reads (what ``ate-ros sim-record`` writes; any recorder can).
METADATA_INSTRUCTION = "instruction"
METADATA_TASK = "task"
METADATA_SUCCESS = "success"
METADATA_EMBODIMENT = "embodiment"


class BagError(RuntimeError):
    """A bag cannot be converted; the message names the bag and what to change."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message


def _is_rosbag2_dir(p: Path) -> bool:
    return p.is_dir() and (p / ROSBAG2_METADATA).is_file()


def _is_bag(p: Path) -> bool:
    return (_is_rosbag2_dir(p) or (p.is_file() and p.suffix == ROS1_SUFFIX)
            or (p.is_file() and p.suffix in RAW_SUFFIXES))


def discover_bags(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, rosbag2 folders, folders of bags and globs into a sorted list of bags.

    Raises:
        BagError: An input matches nothing that looks like a bag.
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        paths = ([Path(p) for p in sorted(glob.glob(text))] if any(c in text for c in "*?[")
                 else [Path(text)])
        if not paths:
            raise BagError(text, "glob matched nothing")
        for p in paths:
            if _is_bag(p):
                found.append(p)
            elif p.is_dir():
                # A folder of bags, at any depth (e.g. bags/<task>/<episode>); a bag folder's
                # own files are not searched further.
                inner = _bags_below(p)
                if not inner:
                    raise BagError(p, "not a bag and holds no bags (expected metadata.yaml, "
                                      "*.bag, *.mcap or *.db3)")
                found.extend(inner)
            elif not p.exists():
                raise BagError(p, "no such file or folder")
            else:
                raise BagError(p, "not a bag (expected a rosbag2 folder, .bag, .mcap or .db3)")
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in {u.resolve() for u in unique}:
            unique.append(p)
    return unique


def _bags_below(folder: Path) -> list[Path]:
    """Bags inside ``folder`` (sorted), descending into sub-folders that are not bags."""
    out: list[Path] = []
    for child in sorted(folder.iterdir()):
        if _is_bag(child):
            out.append(child)
        elif child.is_dir():
            inner = _bags_below(child)
            if not inner and not child.name.startswith("."):
                logger.warning("%s: not a bag and holds no bags (no metadata.yaml, *.bag, "
                               "*.mcap or *.db3); skipped", child)
            out.extend(inner)
    return out


def _rosbag2_info(path: Path) -> dict:
    """``rosbag2_bagfile_information`` of a rosbag2 folder ({} if unreadable)."""
    import yaml

    # The C loader where PyYAML has one: metadata of long bags lists many files and topics.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        info = yaml.load((path / ROSBAG2_METADATA).read_text(), Loader=loader)
        return dict(info.get("rosbag2_bagfile_information") or {})
    except Exception:  # reported properly when rosbags opens the bag
        return {}


def bag_storage(path: Path) -> str:
    """``"ros1"``, ``"mcap"`` or ``"sqlite3"`` for a bag path."""
    if path.suffix == ROS1_SUFFIX:
        return "ros1"
    if path.suffix in RAW_SUFFIXES:
        return RAW_SUFFIXES[path.suffix]
    return str(_rosbag2_info(path).get("storage_identifier", "unknown"))


@dataclass
class TopicSummary:
    """One topic of a bag."""

    msgtype: str
    count: int
    connections: list = field(default_factory=list, repr=False)


class BagSource:
    """An open bag: its connections, a typestore that can decode them, and its metadata.

    Args:
        path: A bag (see :func:`discover_bags`).
        distro: ROS distribution for types the bag does not define; ``None`` detects it.
        msg_dirs: Extra ``.msg`` folders (``DIR`` or ``PKG=DIR``).

    Use as a context manager; all reader errors surface as :class:`BagError`.
    """

    def __init__(self, path: str | Path, distro: str | None = None,
                 msg_dirs: Iterable[str | Path] = ()) -> None:
        self.path = Path(path)
        self.distro_arg = distro
        self.msg_dirs = [str(d) for d in msg_dirs]
        self.storage = bag_storage(self.path)
        self.ros1 = self.storage == "ros1"
        self.distro = ""
        self.reader = None
        self.topics: dict[str, TopicSummary] = {}
        self.metadata: dict[str, str] = {}
        self.typestore = None
        self.undefined_types: set[str] = set()
        self.warnings: list[str] = []

    # ----- opening --------------------------------------------------------------------------
    def __enter__(self) -> BagSource:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Open the reader, build the typestore and read the metadata."""
        try:
            if self.ros1:
                from rosbags.rosbag1 import Reader as Reader1

                self.reader = Reader1(self.path)
            else:
                from rosbags.rosbag2 import Reader as Reader2

                self.reader = Reader2(self.path)
            self.reader.open()
        except Exception as exc:  # truncated or corrupt files raise many error types
            self.reader = None
            hint = ("only CDR-serialised rosbag2 bags can be read" if "serialization format"
                    in str(exc).lower() else "the file may be truncated or corrupt")
            raise BagError(self.path, f"cannot open bag ({type(exc).__name__}: {exc}); "
                                      f"{hint}") from exc
        try:
            for conn in self.reader.connections:
                s = self.topics.setdefault(conn.topic, TopicSummary(conn.msgtype, 0))
                if s.msgtype != conn.msgtype:
                    raise BagError(self.path, f"topic {conn.topic} carries two types "
                                              f"({s.msgtype}, {conn.msgtype})")
                s.count += int(conn.msgcount)
                s.connections.append(conn)
            self.distro = self._detect_distro()
            self.typestore = self._build_typestore()
            self.metadata = self._read_metadata()
        except BagError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise BagError(self.path, f"cannot read bag ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        """Close the reader (idempotent)."""
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # closing a corrupt reader may fail again; nothing to keep
                logger.debug("closing %s failed", self.path, exc_info=True)

    def _detect_distro(self) -> str:
        if self.distro_arg:
            return self.distro_arg
        if self.ros1:
            return ROS1_DISTRO
        # rosbags' own writer puts "rosbags" here; only trust real distribution names.
        recorded = getattr(getattr(self.reader, "metadata", None), "ros_distro", None)
        if recorded is None:
            try:
                recorded = self.reader.ros_distro
            except Exception:  # raw .mcap/.db3 files have no metadata.yaml
                recorded = None
        if recorded and str(recorded).lower() in available_distros():
            return str(recorded).lower()
        return DEFAULT_DISTRO

    def _build_typestore(self):
        from rosbags.interfaces import MessageDefinitionFormat
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        try:
            fallback = _cached_typestore(self.distro, tuple(self.msg_dirs))
        except TypestoreError as exc:
            raise BagError(self.path, str(exc)) from exc
        embedded: dict = {}
        for conn in (c for s in self.topics.values() for c in s.connections):
            fmt, data = conn.msgdef.format, conn.msgdef.data
            if fmt == MessageDefinitionFormat.NONE or not data:
                continue
            try:
                if fmt == MessageDefinitionFormat.MSG:
                    embedded.update(get_types_from_msg(data, conn.msgtype))
                else:
                    sep = "=" * 80 + "\n"
                    parts = data.split(sep)[1:] if data.startswith(f"{sep}IDL: ") else [data]
                    for part in parts:
                        idl = part.split("\n", 1)[1] if part.startswith("IDL: ") else part
                        embedded.update(get_types_from_idl(idl))
            except Exception as exc:
                self.warnings.append(f"embedded definition of {conn.msgtype} on {conn.topic} "
                                     f"unreadable ({exc}); using the {self.distro} typestore")
        if not embedded:
            store = fallback
        else:
            store = get_typestore(Stores.EMPTY)
            store.register(embedded)
            if {s.msgtype for s in self.topics.values()} - set(store.fielddefs):
                register_missing(store, fallback.fielddefs)
        self.undefined_types = {s.msgtype for s in self.topics.values()} - set(store.fielddefs)
        return store

    def _read_metadata(self) -> dict[str, str]:
        """rosbag2 ``custom_data``, or ROS 1 ``/ate_ros/metadata`` messages."""
        if self.ros1:
            out: dict[str, str] = {}
            s = self.topics.get(T.METADATA_TOPIC)
            if s is None or s.msgtype != T.STRING_TYPE:
                return out
            for _, _, raw in self.reader.messages(connections=s.connections):
                try:
                    item = json.loads(self.deserialize(raw, T.STRING_TYPE).data)
                    out[str(item["key"])] = str(item["value"])
                except (ValueError, KeyError, TypeError):
                    self.warnings.append(f"unreadable entry on {T.METADATA_TOPIC} ignored")
            return out
        if not (self.path / ROSBAG2_METADATA).is_file():
            return {}
        custom = _rosbag2_info(self.path).get("custom_data") or {}
        return {str(k): str(v) for k, v in custom.items()}

    # ----- reading --------------------------------------------------------------------------
    def check_type(self, topic: str, allowed: Sequence[str]) -> str:
        """The topic's type; BagError if it is not one of ``allowed`` or cannot be decoded."""
        s = self.topics[topic]
        if s.msgtype not in allowed:
            raise BagError(self.path, f"topic {topic} has type {s.msgtype}, expected one of "
                                      f"{list(allowed)}")
        if s.msgtype in self.undefined_types:
            raise BagError(self.path, f"no definition for {s.msgtype} on {topic}: the bag does "
                                      "not embed it and the typestore lacks it; pass --msg-dir "
                                      "with its .msg files or --ros-distro")
        return s.msgtype

    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
        """``(topic, log_time_ns, raw)`` in log-time order for the given topics."""
        conns = [c for t in topics for c in self.topics[t].connections]
        if not conns:
            return
        try:
            for conn, t, raw in self.reader.messages(connections=conns):
                yield conn.topic, t, raw
        except Exception as exc:
            if "checksum" in str(exc).lower():  # rosbags' MCAP reader checks chunk CRCs
                raise BagError(self.path, f"CRC mismatch in an MCAP chunk ({exc}): the bag's "
                                          "bytes are damaged; copy or record it again") from exc
            raise BagError(self.path, f"error while reading messages ({type(exc).__name__}: "
                                      f"{exc}); the file may be truncated or corrupt") from exc

    def deserialize(self, raw: bytes, msgtype: str):
        """Decode one message with the bag's typestore."""
        if self.ros1:
            return self.typestore.deserialize_ros1(raw, msgtype)
        return self.typestore.deserialize_cdr(raw, msgtype)


_STORE_CACHE: dict[tuple[str, tuple[str, ...]], object] = {}


def _cached_typestore(distro: str, msg_dirs: tuple[str, ...]):
    """Typestores are slow to build (code generation); share them within a process."""
    key = (distro, msg_dirs)
    if key not in _STORE_CACHE:
        _STORE_CACHE[key] = make_typestore(distro, msg_dirs)
    return _STORE_CACHE[key]


# ----- fast paths for the hot loop ----------------------------------------------------------
# Header-first messages share a layout: CDR = 4-byte encapsulation, int32 sec, uint32 nanosec;
# ROS 1 = uint32 seq, uint32 sec, uint32 nsec. Reading the stamp with struct avoids
# deserialising images that the resampler will never keep.
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")


def header_stamp_ns(raw: bytes, ros1: bool) -> int:
    """Header stamp (ns) of a message whose first field is ``std_msgs/Header``."""
    sec, nsec = _STAMP.unpack_from(raw, 4)
    if not ros1 and raw[1] != 1:  # big-endian CDR (never produced by ROS 2 on x86/ARM)
        sec, nsec = struct.unpack_from(">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def _skip_strings_cdr(raw: bytes, pos: int, n: int) -> int:
    """Offset after ``n`` CDR strings starting at ``pos`` (4-byte aligned from byte 4)."""
    u32 = _U32.unpack_from
    for _ in range(n):
        pos += (-(pos - 4)) % 4
        pos += 4 + u32(raw, pos)[0]
    return pos


def split_joint_state(raw: bytes, ros1: bool) -> tuple[int, bytes, int, int] | None:
    """Parse a ``sensor_msgs/JointState`` without building Python objects.

    Returns:
        ``(stamp_ns, names_block, position_offset, position_count)`` where ``names_block`` is
        the raw bytes of the name list (a cache key: publishers send the same names every
        time) and the positions are ``position_count`` little-endian float64 at
        ``position_offset``. ``None`` when the layout is unexpected (the caller then uses the
        generic deserialiser).
    """
    try:
        u32 = _U32.unpack_from
        if ros1:
            sec, nsec = _STAMP.unpack_from(raw, 4)
            pos = 12 + 4 + u32(raw, 12)[0]  # frame_id
            names_start = pos
            n = u32(raw, pos)[0]
            pos += 4
            for _ in range(n):
                pos += 4 + u32(raw, pos)[0]
            names = raw[names_start:pos]
            count = u32(raw, pos)[0]
            off = pos + 4
        else:
            if raw[1] != 1:
                return None
            sec, nsec = _STAMP.unpack_from(raw, 4)
            pos = 12 + 4 + u32(raw, 12)[0]  # frame_id (length includes the NUL)
            pos += (-(pos - 4)) % 4
            names_start = pos
            n = u32(raw, pos)[0]
            pos = _skip_strings_cdr(raw, pos + 4, n)
            names = raw[names_start:pos]
            pos += (-(pos - 4)) % 4
            count = u32(raw, pos)[0]
            off = pos + 4
            if count:
                off += (-(off - 4)) % 8
        if count and off + 8 * count > len(raw):
            return None
        return sec * 1_000_000_000 + nsec, bytes(names), off, count
    except struct.error:
        return None


def decode_names_block(block: bytes, ros1: bool) -> list[str]:
    """Joint names from the ``names_block`` of :func:`split_joint_state`."""
    n = _U32.unpack_from(block, 0)[0]
    out, pos = [], 4
    for _ in range(n):
        if not ros1:
            pos += (-pos) % 4  # block starts 4-aligned, so block offsets keep the alignment
        ln = _U32.unpack_from(block, pos)[0]
        s = block[pos + 4:pos + 4 + ln]
        out.append((s[:-1] if not ros1 and s.endswith(b"\0") else s).decode())
        pos += 4 + ln
    return out
