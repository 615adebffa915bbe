"""``ate-ros plot-chunks BAG_OR_DATASET``: the RViz chunk picture as a PNG, without RViz.

Inputs:
- an episode dataset folder (``train/``/``val/`` of ``*.hdf5``) or one episode file: chunks are
  windows ``action[t : t + H]`` at evenly spaced ``t``; the executed path is ``qpos``;
- a rosbag (ROS 1, ROS 2 sqlite3 or MCAP; read with rosbags): chunks are ``ate_ros/ActionChunk``
  messages (with their extra samples) or, without those, ``trajectory_msgs/JointTrajectory``
  commands; the executed path comes from ``sensor_msgs/JointState``.

End-effector positions come from the embodiment's URDF or simulation model
(:func:`ate_ros.core.kinematics.load_kinematics`); the drawing is
:func:`ate_ros.core.chunk_viz.render_png` (3D view, top and side projections).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ate_ros.core.chunk_layout import ChunkLayoutError, read_action_chunk, read_joint_trajectory

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="episode dataset folder, episode .hdf5 file, or rosbag")
    parser.add_argument("-o", "--out", default="",
                        help="PNG path (default: <source>_chunks.png next to the source)")
    parser.add_argument("--embodiment", default="",
                        help="embodiment name or YAML (default: read from the data)")
    parser.add_argument("--episode", type=int, default=0, help="episode index in a dataset")
    parser.add_argument("--split", default="train", help="dataset split")
    parser.add_argument("--chunks", type=int, default=6, help="chunks drawn (evenly spaced)")
    parser.add_argument("--horizon", type=int, default=16,
                        help="chunk length for datasets (action windows)")
    parser.add_argument("--kinematics", default="auto", choices=("auto", "urdf", "sim", "joints"),
                        help="forward kinematics source")
    parser.add_argument("--topic", default="", help="bag topic of the chunks (default: any)")


# ----- loading ------------------------------------------------------------------------------
def _embodiment(spec: str, fallback: str | None, folder: Path | None = None):
    from ate_ros.core.embodiment import Embodiment, load_embodiment

    if spec:
        return load_embodiment(spec)
    if folder is not None and (folder / "embodiment.yaml").is_file():
        return Embodiment.from_yaml(folder / "embodiment.yaml")
    if fallback:
        return load_embodiment(fallback)
    raise SystemExit("cannot tell the embodiment: pass --embodiment")


def _evenly(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(n_total - 1, 0), max(1, min(n, n_total))).astype(int))


def load_dataset(args) -> tuple:
    """-> (embodiment, [(chunk (H, D), [samples])], executed (T, D), title)."""
    from ate_ros.core.data.episode_format import episode_paths, read_episode

    src = Path(args.source)
    if src.is_dir():
        path = episode_paths(src, args.split)[args.episode]
        folder = src
    else:
        path, folder = src, src.parent.parent
    ep = read_episode(path, load_images=False)
    emb = _embodiment(args.embodiment, ep.embodiment or None, folder)
    actions = ep.action if ep.action is not None else ep.qpos
    H = min(args.horizon, len(actions))
    starts = _evenly(len(actions) - H + 1, args.chunks)
    chunks = [(actions[s:s + H], []) for s in starts]
    title = f"{path.name}: {emb.name}, {len(chunks)} action windows of {H}"
    return emb, chunks, ep.qpos, title


def load_bag(args) -> tuple:
    from rosbags.highlevel import AnyReader

    from ate_ros.core.data.typestores import make_typestore

    src = Path(args.source)
    chunk_types = ("ate_ros/msg/ActionChunk", "trajectory_msgs/msg/JointTrajectory")
    with AnyReader([src], default_typestore=make_typestore()) as reader:
        conns = [c for c in reader.connections if c.msgtype in chunk_types
                 and (not args.topic or c.topic == args.topic)]
        if any(c.msgtype == chunk_types[0] for c in conns):
            conns = [c for c in conns if c.msgtype == chunk_types[0]]
        states = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/JointState"]
        if not conns:
            raise SystemExit(f"{src}: no ActionChunk or JointTrajectory messages")
        raw_chunks, emb_name, executed = [], None, []
        for conn, _, raw in reader.messages(connections=conns + states):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.msgtype == "sensor_msgs/msg/JointState":
                executed.append((list(msg.name), np.asarray(msg.position, dtype=float)))
                continue
            if conn.msgtype == chunk_types[0]:
                if msg.model_id.startswith("hold"):
                    continue
                emb_name = emb_name or msg.embodiment
            try:  # an ActionChunk (flat, or the legacy layout of older bags) or a trajectory
                chunk = (read_action_chunk(msg) if conn.msgtype == chunk_types[0]
                         else read_joint_trajectory(msg))
            except ChunkLayoutError as exc:
                raise SystemExit(f"{src}: {conn.topic}: malformed {conn.msgtype}: {exc}") \
                    from exc
            raw_chunks.append((chunk.joint_names, chunk.positions, chunk.samples))
    emb = _embodiment(args.embodiment, emb_name)

    def to_array(names: list[str], pos: np.ndarray) -> np.ndarray:
        missing = [n for n in emb.joint_names if n not in names]
        if missing:
            raise SystemExit(f"{src}: chunks lack joints {missing} of {emb.name}")
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
    title = f"{src.name}: {emb.name}, {len(chunks)} of {len(raw_chunks)} chunks"
    return emb, chunks, np.array(qs).reshape(-1, emb.dof), title


def is_dataset(path: Path) -> bool:
    return path.suffix in (".hdf5", ".h5") or (path.is_dir() and (
        (path / "train").is_dir() or (path / "val").is_dir()))


def run(args: argparse.Namespace) -> int:
    from ate_ros.core.chunk_viz import ChunkHistory, ChunkVizConfig, render_png
    from ate_ros.core.kinematics import load_kinematics

    src = Path(args.source)
    if not src.exists():
        raise SystemExit(f"{src} does not exist")
    emb, chunks, executed, title = (load_dataset if is_dataset(src) else load_bag)(args)
    fk = load_kinematics(emb, args.kinematics)
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
    return 0
