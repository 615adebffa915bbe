"""Write real rosbags (ROS 2 MCAP / sqlite3, ROS 1) without ROS: the simulation's recorder.

:class:`BagRecorder` writes the message types ``ate-ros bag2dataset`` reads, on the default topics
of :mod:`ate_ros.core.data.topics`. Header stamps are the given ``t_ns``; the bag's log (receive)
time is ``t_ns + recv_delay_ns``, so tests and the simulation can model transport delay.

Metadata (:meth:`BagRecorder.set_metadata`, e.g. the instruction) is stored

* in rosbag2 bags (MCAP and sqlite3): in ``metadata.yaml`` under
  ``rosbag2_bagfile_information.custom_data`` (what ``ros2 bag record --custom-data`` writes);
* in ROS 1 bags, which have no metadata section: as ``std_msgs/String`` messages on
  ``/ate_ros/metadata`` holding ``{"key": ..., "value": ...}`` JSON, stamped with the first
  message time of the bag.

MCAP files carry the CRC-32 of every chunk (as ``ros2 bag record`` writes them; rosbags' own
writer leaves the field zero, "not computed"), so readers detect damaged bytes instead of
decoding them: :func:`write_mcap_chunk_crcs` fills them in when the bag is closed.

Example::

    with BagRecorder("demo_000", storage="mcap") as rec:
        rec.set_metadata("instruction", "pick up the cube")
        rec.write_joint_state(t_ns, ["j1", "j2"], [0.1, 0.2])
        rec.write_image(t_ns, rgb, topic="/wrist/image_raw")
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from ate_ros.core.data import topics as T
from ate_ros.core.data.typestores import DEFAULT_DISTRO, ROS1_DISTRO, make_typestore

logger = logging.getLogger(__name__)

STORAGES = ("mcap", "sqlite3", "ros1")
COMPRESSED_FORMATS = ("jpeg", "png")
ROSBAG2_VERSION = 9


class BagWriteError(ValueError):
    """Invalid arguments to :class:`BagRecorder` (the bag is not left half-written)."""


def _split_ns(t_ns: int) -> tuple[int, int]:
    t_ns = int(t_ns)
    return t_ns // 1_000_000_000, t_ns % 1_000_000_000


class BagRecorder:
    """Context manager writing one bag.

    Args:
        path: Output path: a folder for rosbag2 storages, a ``.bag`` file for ``ros1`` (the
            suffix is what readers use to tell ROS 1 bags apart, so it is required). Must not
            exist.
        storage: ``"mcap"`` (rosbag2 default since Iron), ``"sqlite3"`` or ``"ros1"``.
        typestore_distro: ROS 2 distribution whose message layouts are written (ignored for
            ``ros1``, which always uses Noetic layouts).

    On an exception inside the ``with`` block the partial bag is deleted, so a crashed
    recording never looks like a valid demonstration.
    """

    def __init__(self, path: str | Path, storage: str = "mcap",
                 typestore_distro: str = DEFAULT_DISTRO) -> None:
        if storage not in STORAGES:
            raise BagWriteError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        if storage == "ros1" and self.path.suffix != ".bag":
            raise BagWriteError(f"{self.path}: ROS 1 bags must end in '.bag'")
        if self.path.exists():
            raise BagWriteError(f"{self.path} exists already; choose a new path")
        self.ros1 = storage == "ros1"
        self.typestore = make_typestore(ROS1_DISTRO if self.ros1 else typestore_distro)
        self._writer = None
        self._connections: dict[str, tuple[object, str]] = {}
        self._metadata: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._first_ns: int | None = None
        self.counts: dict[str, int] = {}
        """Messages written per topic."""

    # ----- lifecycle ------------------------------------------------------------------------
    def open(self) -> BagRecorder:
        """Create the bag (called by ``__enter__``)."""
        if self._writer is not None:
            raise BagWriteError(f"{self.path}: already open")
        if self.ros1:
            from rosbags.rosbag1 import Writer as Writer1

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer1(self.path)
        else:
            from rosbags.rosbag2 import StoragePlugin
            from rosbags.rosbag2 import Writer as Writer2

            plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer2(self.path, version=ROSBAG2_VERSION, storage_plugin=plugin)
        self._writer.open()
        return self

    def close(self) -> None:
        """Write the metadata and indexes and close the bag."""
        if self._writer is None:
            return
        if self.ros1:
            stamp = self._first_ns or 0
            for key, value in self._metadata.items():
                self._write(T.METADATA_TOPIC, T.STRING_TYPE, stamp,
                            self._msg(T.STRING_TYPE, data=json.dumps({"key": key,
                                                                      "value": value})))
        else:
            for key, value in self._metadata.items():
                self._writer.set_custom_data(key, value)
        writer, self._writer = self._writer, None
        writer.close()
        if self.storage == "mcap":
            for f in sorted(self.path.glob("*.mcap")):
                write_mcap_chunk_crcs(f)
        logger.debug("wrote %s (%s): %s", self.path, self.storage, self.counts)

    def abort(self) -> None:
        """Stop writing and delete the partial bag."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # the bag is deleted below anyway
                logger.debug("abort of %s failed", self.path, exc_info=True)
        if self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.path.exists():
            self.path.unlink()

    def __enter__(self) -> BagRecorder:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ----- helpers --------------------------------------------------------------------------
    def _msg(self, typename: str, **fields):
        return self.typestore.types[typename](**fields)

    def _header(self, topic: str, t_ns: int, frame_id: str = ""):
        sec, nsec = _split_ns(t_ns)
        stamp = self._msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nsec)
        if self.ros1:
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
            return self._msg("std_msgs/msg/Header", seq=seq, stamp=stamp, frame_id=frame_id)
        return self._msg("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

    def _write(self, topic: str, typename: str, log_ns: int, msg) -> None:
        if self._writer is None:
            raise BagWriteError(f"{self.path}: not open (use 'with BagRecorder(...) as rec:')")
        if log_ns < 0:
            raise BagWriteError(f"{topic}: negative time {log_ns} ns")
        conn = self._connections.get(topic)
        if conn is None:
            c = self._writer.add_connection(topic, typename, typestore=self.typestore)
            conn = self._connections[topic] = (c, typename)
        elif conn[1] != typename:
            raise BagWriteError(
                f"{topic}: already carries {conn[1]}, cannot also write {typename}")
        raw = (self.typestore.serialize_ros1(msg, typename) if self.ros1
               else self.typestore.serialize_cdr(msg, typename))
        self._writer.write(conn[0], int(log_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        if self._first_ns is None or log_ns < self._first_ns:
            self._first_ns = int(log_ns)

    @staticmethod
    def _points(topic: str, names: Sequence[str], positions: np.ndarray,
                dt: float) -> np.ndarray:
        """(N, D) positions for ``names``, checked; dt > 0."""
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != len(names):
            raise BagWriteError(
                f"{topic}: positions must be (N, {len(names)}) for joints {list(names)}, got "
                f"{pos.shape}")
        if not dt > 0:
            raise BagWriteError(f"{topic}: dt must be positive, got {dt}")
        return pos

    def _trajectory(self, topic: str, t_ns: int, names: Sequence[str], positions: np.ndarray,
                    dt: float, frame_id: str = ""):
        pos = self._points(topic, names, positions, dt)
        empty = np.zeros(0, dtype=np.float64)
        points = []
        for i in range(pos.shape[0]):
            sec, nsec = _split_ns(round((i + 1) * dt * 1e9))
            points.append(self._msg(
                "trajectory_msgs/msg/JointTrajectoryPoint", positions=pos[i].copy(),
                velocities=empty, accelerations=empty, effort=empty,
                time_from_start=self._msg("builtin_interfaces/msg/Duration", sec=sec,
                                          nanosec=nsec)))
        return self._msg(T.JOINT_TRAJECTORY_TYPE, header=self._header(topic, t_ns, frame_id),
                         joint_names=[str(n) for n in names], points=points)

    # ----- public writers -------------------------------------------------------------------
    def write_joint_state(self, t_ns: int, names: Sequence[str], positions,
                          velocities=None, topic: str = T.JOINT_STATES_TOPIC,
                          recv_delay_ns: int = 0) -> None:
        """Write a ``sensor_msgs/JointState`` stamped ``t_ns`` (names in any order)."""
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if len(pos) != len(names):
            raise BagWriteError(f"{topic}: {len(names)} names but {len(pos)} positions")
        vel = (np.zeros(0) if velocities is None
               else np.asarray(velocities, dtype=np.float64).reshape(-1))
        if len(vel) not in (0, len(names)):
            raise BagWriteError(f"{topic}: {len(names)} names but {len(vel)} velocities")
        msg = self._msg(T.JOINT_STATE_TYPE, header=self._header(topic, t_ns),
                        name=[str(n) for n in names], position=pos, velocity=vel,
                        effort=np.zeros(0, dtype=np.float64))
        self._write(topic, T.JOINT_STATE_TYPE, t_ns + recv_delay_ns, msg)

    def write_image(self, t_ns: int, rgb: np.ndarray, topic: str, frame_id: str = "camera",
                    compressed: bool | str = False, recv_delay_ns: int = 0) -> None:
        """Write an RGB uint8 (H, W, 3) frame.

        Args:
            compressed: ``False`` for ``sensor_msgs/Image`` (``rgb8``); ``True``/``"jpeg"`` or
                ``"png"`` for ``sensor_msgs/CompressedImage`` encoded with OpenCV.
        """
        img = np.asarray(rgb)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise BagWriteError(f"{topic}: image must be uint8 (H, W, 3), got {img.dtype} "
                                f"{img.shape}")
        header = self._header(topic, t_ns, frame_id)
        if compressed:
            import cv2

            fmt = "jpeg" if compressed is True else str(compressed)
            if fmt not in COMPRESSED_FORMATS:
                raise BagWriteError(f"{topic}: compressed format must be one of "
                                    f"{COMPRESSED_FORMATS}, got {fmt!r}")
            ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png",
                                   np.ascontiguousarray(img[:, :, ::-1]))  # OpenCV wants BGR
            if not ok:
                raise BagWriteError(f"{topic}: OpenCV could not encode the image as {fmt}")
            msg = self._msg(T.COMPRESSED_IMAGE_TYPE, header=header, format=fmt,
                            data=np.asarray(buf, dtype=np.uint8).reshape(-1))
            self._write(topic, T.COMPRESSED_IMAGE_TYPE, t_ns + recv_delay_ns, msg)
            return
        h, w = img.shape[:2]
        msg = self._msg(T.IMAGE_TYPE, header=header, height=h, width=w, encoding="rgb8",
                        is_bigendian=0, step=w * 3,
                        data=np.ascontiguousarray(img).reshape(-1))
        self._write(topic, T.IMAGE_TYPE, t_ns + recv_delay_ns, msg)

    def write_joint_trajectory(self, t_ns: int, names: Sequence[str], positions: np.ndarray,
                               dt: float, topic: str = T.COMMAND_TOPIC,
                               recv_delay_ns: int = 0) -> None:
        """Write a ``trajectory_msgs/JointTrajectory`` of (N, D) points, i-th at ``(i+1)*dt``."""
        msg = self._trajectory(topic, t_ns, names, positions, dt)
        self._write(topic, T.JOINT_TRAJECTORY_TYPE, t_ns + recv_delay_ns, msg)

    def write_string(self, t_ns: int, text: str, topic: str = T.INSTRUCTION_TOPIC) -> None:
        """Write a ``std_msgs/String`` (e.g. the instruction)."""
        self._write(topic, T.STRING_TYPE, t_ns, self._msg(T.STRING_TYPE, data=str(text)))

    def write_action_chunk(self, t_ns: int, names: Sequence[str], positions: np.ndarray,
                           dt: float, topic: str = T.ACTION_CHUNK_TOPIC, embodiment: str = "",
                           model_id: str = "", inference_latency: float = 0.0,
                           ood_score: float = float("nan"), frame_id: str = "base_link",
                           recv_delay_ns: int = 0, takeover_index: int = 0) -> None:
        """Write an ``ate_ros/ActionChunk`` of (N, D) points, stamped with the observation time
        ``t_ns`` (flat layout: :mod:`ate_ros.core.chunk_layout`). ``takeover_index`` is
        written where the bag's definition has the field (not in older ones)."""
        pos = self._points(topic, names, positions, dt)
        extra = {}
        fields = self.typestore.fielddefs.get(T.ACTION_CHUNK_TYPE, ((), ()))[1]
        if "takeover_index" in {f[0] for f in fields}:
            extra["takeover_index"] = int(takeover_index)
        msg = self._msg(T.ACTION_CHUNK_TYPE, header=self._header(topic, t_ns, frame_id),
                        embodiment=embodiment, model_id=model_id, joint_names=list(names),
                        dt=float(dt), positions=pos.ravel(),
                        inference_latency=float(inference_latency), ood_score=float(ood_score),
                        samples=np.zeros(0, dtype=np.float64), **extra)
        self._write(topic, T.ACTION_CHUNK_TYPE, t_ns + recv_delay_ns, msg)

    def write_environment_state(self, t_ns: int, names: Sequence[str], values,
                                topic: str = T.ENV_STATE_TOPIC, recv_delay_ns: int = 0) -> None:
        """Write an ``ate_ros/EnvironmentState`` stamped ``t_ns`` (one name per value)."""
        vals = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(vals) != len(names):
            raise BagWriteError(f"{topic}: {len(names)} names but {len(vals)} values")
        msg = self._msg(T.ENV_STATE_TYPE, header=self._header(topic, t_ns),
                        names=[str(n) for n in names], values=vals)
        self._write(topic, T.ENV_STATE_TYPE, t_ns + recv_delay_ns, msg)

    def set_metadata(self, key: str, value: str) -> None:
        """Store a string key/value (see the module docstring for where)."""
        if not isinstance(value, str) or not isinstance(key, str) or not key:
            raise BagWriteError(f"metadata key and value must be strings, got {key!r}={value!r}")
        self._metadata[key] = value


# MCAP layout (https://mcap.dev/spec): magic, then records of opcode (uint8), length (uint64 LE)
# and content. A Chunk's content starts with message_start_time, message_end_time,
# uncompressed_size (uint64 each) and uncompressed_crc (uint32), then compression (string:
# uint32 length + bytes) and records (uint64 length + bytes).
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_CHUNK, _OP_DATA_END, _OP_FOOTER = 0x06, 0x0F, 0x02
_RECORD_HEAD = struct.Struct("<BQ")
_CRC_AT = 24  # offset of uncompressed_crc in a Chunk's content


def mcap_chunk_records(path: str | Path) -> list[tuple[int, int]]:
    """``(offset, length)`` of the content of each Chunk record in an MCAP file's data section.

    Raises:
        BagWriteError: The file is not an MCAP file or a record runs past its end.
    """
    path = Path(path)
    size = path.stat().st_size
    out = []
    with open(path, "rb") as f:
        if f.read(len(_MCAP_MAGIC)) != _MCAP_MAGIC:
            raise BagWriteError(f"{path}: not an MCAP file")
        pos = len(_MCAP_MAGIC)
        while pos + _RECORD_HEAD.size <= size:
            f.seek(pos)
            op, length = _RECORD_HEAD.unpack(f.read(_RECORD_HEAD.size))
            start = pos + _RECORD_HEAD.size
            if start + length > size:
                raise BagWriteError(f"{path}: record at byte {pos} runs past the end of the file")
            if op in (_OP_DATA_END, _OP_FOOTER):
                break
            if op == _OP_CHUNK:
                out.append((start, length))
            pos = start + length
    return out


def write_mcap_chunk_crcs(path: str | Path) -> int:
    """Fill in the ``uncompressed_crc`` of every chunk of an MCAP file, in place.

    Only uncompressed chunks (what :class:`BagRecorder` writes) are filled; compressed ones keep
    their field as it is.

    Returns:
        How many chunks were given a CRC.

    Raises:
        BagWriteError: The file is not an MCAP file or a record runs past its end.
    """
    done = 0
    with open(path, "r+b") as f:
        for start, length in mcap_chunk_records(path):
            f.seek(start)
            content = f.read(length)  # chunks are ~1 MB: rosbags starts a new one beyond 1 MiB
            comp_len = struct.unpack_from("<I", content, _CRC_AT + 4)[0]
            if comp_len:
                continue
            rec_at = _CRC_AT + 8
            rec_len = struct.unpack_from("<Q", content, rec_at)[0]
            f.seek(start + _CRC_AT)
            f.write(struct.pack("<I", zlib.crc32(content[rec_at + 8:rec_at + 8 + rec_len])))
            done += 1
    return done
