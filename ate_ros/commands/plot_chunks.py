"""``ate-ros plot-chunks BAG_OR_DATASET``: the RViz chunk picture as a PNG, without RViz.

Inputs:
- an episode dataset folder (``train/``/``val/`` of ``*.hdf5``) or one episode file: chunks are
  windows ``action[t : t + H]`` at evenly spaced ``t``; the executed path is ``qpos``;
- a rosbag (ROS 1, ROS 2 sqlite3 or MCAP), opened as ``ate-ros bag2dataset`` opens it
  (:class:`ate_ros.core.data.bags.BagSource`: the same errors, the same typestores, topics whose
  types cannot be decoded skipped with a warning): chunks are ``ate_ros/ActionChunk`` messages
  (with their extra samples; stop and hold chunks skipped) or, without those,
  ``trajectory_msgs/JointTrajectory`` commands; the executed path comes from
  ``sensor_msgs/JointState``.

The embodiment is ``--embodiment``, else the dataset's ``embodiment.yaml`` or the episode's
attribute, else for a bag its metadata's ``embodiment`` (what ``ate-ros sim-record`` writes),
else the ``embodiment`` field of its ActionChunks.

End-effector positions come from the embodiment's URDF or simulation model
(:func:`ate_ros.core.viz.ee_kinematics.load_kinematics`); the drawing is
:func:`ate_ros.core.viz.chunk_paths.render_png` (3D view, top and side projections).

Exit codes: 0 when the PNG was written; 1 when the input cannot be drawn (a bag that cannot be
opened or read, e.g. empty, truncated, damaged or not CDR-serialised, with the message
``bag2dataset`` gives for it; no chunk left to draw; chunks that lack the embodiment's joints;
an episode file that cannot be read); 2 for bad arguments (no such source, not a bag or
dataset, an embodiment that cannot be found or told, a ``--topic`` or episode index the
source lacks, a kinematics source the embodiment lacks). Errors are one line on stderr;
nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_ros.commands.arguments import add_dataclass_options
from ate_ros.core.chunk_layout import ChunkLayoutError, read_action_chunk, read_joint_trajectory

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 1, 2
EPILOG = (
    "exit status: 0 if the PNG was written; 1 if the input cannot be drawn (a bag that cannot "
    "be opened or read -- empty, truncated, damaged, not CDR -- with bag2dataset's message for "
    "it; no chunk left to draw; chunks lacking the embodiment's joints; an unreadable episode "
    "file); 2 for bad arguments (no such source, not a bag or dataset, embodiment not found or "
    "not named anywhere, --topic or --episode not in the source, kinematics source missing). "
    "Errors are one line on stderr and nothing is written.")

CHUNK_TYPE = "ate_ros/msg/ActionChunk"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
HOLD_PREFIX = "hold"
"""ActionChunks whose model_id starts with this hold the arm; they carry no prediction."""


class PlotError(Exception):
    """The input cannot be drawn; ``code`` is the exit status (see the module docstring)."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


@dataclass(kw_only=True)
class PlotOptions:
    """The options of ``ate-ros plot-chunks`` (a bag's typestore options are
    ``ConversionSpec``'s, as in ``ate-ros bag2dataset``)."""

    source: str = field(metadata={
        "positional": True, "help": "episode dataset folder, episode .hdf5 file, or rosbag"})
    out: str = field(default="", metadata={
        "flag": ["-o", "--out"],
        "help": "PNG path (default: <source>_chunks.png next to the source)"})
    embodiment: str = field(default="", metadata={
        "help": "embodiment name or YAML (default: read from the data)"})
    episode: int = field(default=0, metadata={"help": "episode index in a dataset"})
    split: str = field(default="train", metadata={"help": "dataset split"})
    chunks: int = field(default=6, metadata={"help": "chunks drawn (evenly spaced)"})
    horizon: int = field(default=16, metadata={
        "help": "chunk length for datasets (action windows)"})
    kinematics: str = field(default="auto", metadata={
        "help": "forward kinematics source", "choices": ("auto", "urdf", "sim", "joints")})
    topic: str = field(default="", metadata={"help": "bag topic of the chunks (default: any)"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.data.convert.spec import ConversionSpec

    parser.epilog = EPILOG
    add_dataclass_options(parser, PlotOptions)
    add_dataclass_options(parser, ConversionSpec, only=("ros_distro", "msg_dirs"))


# ----- loading ------------------------------------------------------------------------------
def _embodiment(spec: str, fallbacks: list[tuple[str, str]], folder: Path | None = None):
    """``--embodiment``, else ``folder/embodiment.yaml``, else the first named fallback
    (``(where it was named, name)``)."""
    from ate_ros.core.embodiment import Embodiment, EmbodimentError, load_embodiment

    try:
        if spec:
            return load_embodiment(spec)
        if folder is not None and (folder / "embodiment.yaml").is_file():
            return Embodiment.from_yaml(folder / "embodiment.yaml")
        for where, name in fallbacks:
            if name:
                try:
                    return load_embodiment(name)
                except EmbodimentError as exc:
                    raise PlotError(f"{where} names embodiment {name!r}, which cannot be "
                                    f"loaded ({exc}); pass --embodiment", EXIT_USAGE) from exc
    except (EmbodimentError, OSError) as exc:
        raise PlotError(str(exc), EXIT_USAGE) from exc
    raise PlotError("cannot tell the embodiment: pass --embodiment", EXIT_USAGE)


def _evenly(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(n_total - 1, 0), max(1, min(n, n_total))).astype(int))


def load_dataset(args: argparse.Namespace) -> tuple:
    """-> (embodiment, [(chunk (H, D), [samples])], executed (T, D), title)."""
    from ate_ros.core.data.episode_format import EpisodeFormatError, episode_paths, read_episode

    src = Path(args.source)
    try:
        if src.is_dir():
            paths = episode_paths(src, args.split)
            if not 0 <= args.episode < len(paths):
                raise PlotError(f"{src}: --episode {args.episode} out of range ({len(paths)} "
                                f"episodes in {args.split}/)", EXIT_USAGE)
            path, folder = paths[args.episode], src
        else:
            path, folder = src, src.parent.parent
        ep = read_episode(path, load_images=False)
    except (EpisodeFormatError, OSError) as exc:
        raise PlotError(str(exc)) from exc
    emb = _embodiment(args.embodiment, [(str(path), ep.embodiment)], folder)
    actions = ep.action if ep.action is not None else ep.qpos
    H = min(args.horizon, len(actions))
    starts = _evenly(len(actions) - H + 1, args.chunks)
    chunks = [(actions[s:s + H], []) for s in starts]
    title = f"{path.name}: {emb.name}, {len(chunks)} action windows of {H}"
    return emb, chunks, ep.qpos, title


def _bag_path(src: Path) -> Path:
    """The one bag ``src`` is or holds (a rosbag2 folder without metadata.yaml holds its
    storage file, which bag2dataset reads the same way)."""
    from ate_ros.core.data.bags import BagError, discover_bags

    try:
        bags = discover_bags([src])
    except BagError as exc:
        raise PlotError(str(exc), EXIT_USAGE) from exc
    if len(bags) != 1:
        raise PlotError(f"{src}: holds {len(bags)} bags; plot one of them", EXIT_USAGE)
    return bags[0]


def load_bag(args: argparse.Namespace) -> tuple:
    """-> (embodiment, [(chunk (H, D), [samples])], executed (T, D), title)."""
    from ate_ros.core.data.bags import METADATA_EMBODIMENT, BagError, BagSource

    src = Path(args.source)
    path = _bag_path(src)
    topic = getattr(args, "topic", "")
    try:
        with BagSource(path, getattr(args, "ros_distro", None),
                       getattr(args, "msg_dirs", [])) as bag:
            for w in bag.warnings:
                logger.warning("%s: %s", path, w)
            chunk_topics, state_topics = _bag_topics(bag, topic)
            raw_chunks, executed, chunk_emb, holds = _read_bag(bag, chunk_topics, state_topics)
            named = bag.metadata.get(METADATA_EMBODIMENT, "")
    except BagError as exc:
        raise PlotError(str(exc)) from exc
    if not raw_chunks:
        raise PlotError(f"{path}: no chunk left to draw ({holds} hold/stop chunks skipped)")
    emb = _embodiment(args.embodiment, [(f"{path} metadata", named),
                                        (f"{path} ActionChunk", chunk_emb)])

    def to_array(names: list[str], pos: np.ndarray) -> np.ndarray:
        missing = [n for n in emb.joint_names if n not in names]
        if missing:
            raise PlotError(f"{path}: chunks lack joints {missing} of {emb.name}")
        return pos[:, [names.index(n) for n in emb.joint_names]]

    picked = [raw_chunks[i] for i in _evenly(len(raw_chunks), args.chunks)]
    chunks = [(to_array(names, pos), [to_array(names, s) for s in samples])
              for names, pos, samples in picked]
    qs = []
    for names, pos in executed:
        try:
            qs.append(emb.order_by_name(names, pos))
        except ValueError:
            continue
    title = f"{path.name}: {emb.name}, {len(chunks)} of {len(raw_chunks)} chunks"
    return emb, chunks, np.array(qs).reshape(-1, emb.dof), title


def _bag_topics(bag, topic: str) -> tuple[list[str], list[str]]:
    """Chunk topics (ActionChunk if any, else JointTrajectory) and joint-state topics whose
    types the bag's typestore can decode; the others are skipped with a warning."""
    from ate_ros.core.data.bags import BagError

    if topic and topic not in bag.topics:
        raise PlotError(f"{bag.path}: no topic {topic} (topics: {sorted(bag.topics)}); fix "
                        "--topic", EXIT_USAGE)
    usable = {}
    for name, s in bag.topics.items():
        if s.msgtype in bag.undefined_types:
            logger.warning("%s: %s: no definition for %s; skipped", bag.path, name, s.msgtype)
        elif s.msgtype in (CHUNK_TYPE, TRAJECTORY_TYPE, JOINT_STATE_TYPE):
            usable[name] = s.msgtype
    chunks = [t for t, m in usable.items() if m in (CHUNK_TYPE, TRAJECTORY_TYPE)
              and (not topic or t == topic)]
    if any(usable[t] == CHUNK_TYPE for t in chunks):
        chunks = [t for t in chunks if usable[t] == CHUNK_TYPE]
    if not chunks:
        raise BagError(bag.path, "no ActionChunk or JointTrajectory messages"
                       + (f" on {topic}" if topic else ""))
    return chunks, [t for t, m in usable.items() if m == JOINT_STATE_TYPE]


def _read_bag(bag, chunk_topics: list[str], state_topics: list[str]) -> tuple:
    """-> ([(joint names, positions (H, n), [samples])], [(names, q)], chunk embodiment,
    number of hold/stop chunks skipped)."""
    from ate_ros.core.data.bags import BagError

    raw_chunks, executed, emb_name, holds, bad = [], [], "", 0, 0
    for topic, _, raw in bag.messages(chunk_topics + state_topics):
        msgtype = bag.topics[topic].msgtype
        try:
            msg = bag.deserialize(raw, msgtype)
        except Exception:  # one undecodable message should not hide the others
            bad += 1
            continue
        if msgtype == JOINT_STATE_TYPE:
            executed.append((list(msg.name), np.asarray(msg.position, dtype=float)))
            continue
        if msgtype == CHUNK_TYPE:
            if msg.model_id.startswith(HOLD_PREFIX):
                holds += 1
                continue
            emb_name = emb_name or msg.embodiment
        try:  # an ActionChunk (flat, or the legacy layout of older bags) or a trajectory
            chunk = (read_action_chunk(msg) if msgtype == CHUNK_TYPE
                     else read_joint_trajectory(msg))
        except ChunkLayoutError as exc:
            raise BagError(bag.path, f"{topic}: malformed {msgtype}: {exc}") from exc
        if not chunk.horizon:  # a stop request: nothing to draw
            holds += 1
            continue
        raw_chunks.append((chunk.joint_names, chunk.positions, chunk.samples))
    if bad:
        logger.warning("%s: %d messages could not be decoded; skipped", bag.path, bad)
    return raw_chunks, executed, emb_name, holds


def is_dataset(path: Path) -> bool:
    return path.suffix in (".hdf5", ".h5") or (path.is_dir() and (
        (path / "train").is_dir() or (path / "val").is_dir()))


def plot(args: argparse.Namespace) -> Path:
    """Read the source, draw its chunks and write the PNG; PlotError when it cannot."""
    from ate_ros.core.viz.chunk_paths import ChunkHistory, ChunkVizConfig, render_png
    from ate_ros.core.viz.ee_kinematics import KinematicsError, load_kinematics

    src = Path(args.source)
    if not src.exists():
        raise PlotError(f"{src}: no such file or folder", EXIT_USAGE)
    emb, chunks, executed, title = (load_dataset if is_dataset(src) else load_bag)(args)
    try:
        fk = load_kinematics(emb, args.kinematics)
    except KinematicsError as exc:
        raise PlotError(str(exc), EXIT_USAGE) from exc
    hist = ChunkHistory(fk, ChunkVizConfig(history=max(len(chunks) - 1, 0),
                                           executed_length=max(2, len(executed))))
    if len(executed):
        hist.add_executed_path(executed)
    for chunk, samples in chunks:  # oldest first: the last one added is drawn as "latest"
        hist.add_chunk(chunk, samples)
    out = Path(args.out) if args.out else src.with_name(src.name.rstrip("/") + "_chunks.png")
    render_png(hist.polylines(), out, title=title, metric=fk.metric)
    print(f"wrote {out} ({len(chunks)} chunks, {len(executed)} executed points, "
          f"{type(fk).__name__})")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        plot(args)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return EXIT_OK
