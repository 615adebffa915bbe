"""The picture of predicted action chunks, independent of RViz.

A chunk (H joint-position targets) becomes the end-effector path it would drive, via forward
kinematics (:mod:`ate_ros.core.viz.ee_kinematics`). :class:`ChunkHistory` keeps the latest
chunks and the executed path and turns them into :class:`Polyline` s:

- the latest chunk, coloured by time along the chunk (early -> late: blue -> yellow),
- older chunks, same colouring, fading (alpha) with age,
- extra sampled chunks (other seeds, showing multimodality), thinner,
- the executed (measured) end-effector path, in a colour of its own (red),
- with real-time chunking (:meth:`ChunkHistory.set_rtc`), in flat colours of their own: the
  committed prefix (orange: what executes while the next chunk is computed), the executing
  plan (green) and the incoming chunk from its takeover index (blue).

The ROS visualisation (``ate_ros/nodes/visualization.py``) turns polylines into a
``visualization_msgs/MarkerArray``; :func:`render_png` draws the same polylines with matplotlib
(``ate-ros plot-chunks``).
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ate_ros.core.config_fields import validate_fields
from ate_ros.core.viz.ee_kinematics import ForwardKinematics

# Namespaces of the polylines (marker namespaces in RViz).
NS_LATEST = "latest_chunk"
NS_HISTORY = "older_chunks"
NS_SAMPLES = "sampled_chunks"
NS_EXECUTED = "executed_path"
NS_COMMITTED = "committed_prefix"
NS_EXECUTING = "executing_chunk"
NS_INCOMING = "incoming_chunk"

# Time colour map endpoints (viridis-like: dark blue -> teal -> yellow), RGB in [0, 1].
_TIME_STOPS = np.array([[0.27, 0.00, 0.33], [0.13, 0.57, 0.55], [0.99, 0.91, 0.14]])
EXECUTED_RGB = (0.9, 0.1, 0.1)
RTC_RGB = {NS_COMMITTED: (1.0, 0.55, 0.0), NS_EXECUTING: (0.1, 0.75, 0.2),
           NS_INCOMING: (0.15, 0.45, 1.0)}
"""Real-time chunking paths: committed prefix, executing plan, incoming chunk."""


@dataclass
class ChunkVizConfig:
    """How chunks are drawn."""

    history: int = field(default=5, metadata={
        "help": "older chunks kept on screen (fading), besides the latest", "min": 0, "max": 50})
    line_width: float = field(default=0.006, metadata={
        "help": "width of the latest chunk's path (m)", "min": 0.0005, "max": 0.1})
    sample_line_width: float = field(default=0.002, metadata={
        "help": "width of extra sampled chunks' paths (m)", "min": 0.0001, "max": 0.1})
    executed_length: int = field(default=300, metadata={
        "help": "points of the executed end-effector path kept", "min": 2, "max": 100000})
    min_alpha: float = field(default=0.1, metadata={
        "help": "alpha of the oldest chunk kept", "min": 0.0, "max": 1.0})

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass
class Polyline:
    """A path to draw: (N, 3) points with (N, 4) RGBA colours in [0, 1]."""

    ns: str
    id: int
    points: np.ndarray
    colors: np.ndarray
    width: float


def time_colors(n: int, alpha: float = 1.0) -> np.ndarray:
    """(n, 4) RGBA colours for n points along a chunk, early -> late."""
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(n)
    seg = np.clip(t * (len(_TIME_STOPS) - 1), 0, len(_TIME_STOPS) - 1 - 1e-9)
    i = seg.astype(int)
    f = (seg - i)[:, None]
    rgb = _TIME_STOPS[i] * (1 - f) + _TIME_STOPS[np.minimum(i + 1, len(_TIME_STOPS) - 1)] * f
    return np.concatenate([rgb, np.full((n, 1), alpha)], axis=1)


def age_alpha(age: int, history: int, min_alpha: float) -> float:
    """Alpha for a chunk ``age`` chunks old (0 = latest): linear from 1 to ``min_alpha``."""
    if age <= 0:
        return 1.0
    if history <= 0:
        return min_alpha
    return float(1.0 - (1.0 - min_alpha) * min(age, history) / history)


class ChunkHistory:
    """The latest chunks' end-effector paths and the executed path, ready to draw.

    Joint arrays are in the embodiment's joint order (``(H, D)`` per chunk, ``(D,)`` per measured
    position); forward kinematics is applied when they are added, so drawing is cheap.
    """

    def __init__(self, fk: ForwardKinematics, config: ChunkVizConfig | None = None) -> None:
        self.fk = fk
        self.config = config or ChunkVizConfig()
        # newest first: (chunk path (H, 3), [sample paths (H, 3)])
        self._chunks: deque[tuple[np.ndarray, list[np.ndarray]]] = deque(
            maxlen=self.config.history + 1)
        self._executed: deque[np.ndarray] = deque(maxlen=self.config.executed_length)
        self._rtc: dict[str, np.ndarray] = {}  # namespace -> (N, 3) path

    def set_rtc(self, committed: np.ndarray, executing: np.ndarray,
                incoming: np.ndarray) -> None:
        """The real-time chunking picture of the latest chunk (each (N, D) joints, N may be 0):
        the committed prefix it was given (its first d points), the plan executing while it was
        computed and the chunk itself from its takeover index."""
        self._rtc = {ns: self.fk.ee_positions(np.asarray(q)) for ns, q in (
            (NS_EXECUTING, executing), (NS_COMMITTED, committed), (NS_INCOMING, incoming))
            if len(q)}

    @property
    def frame(self) -> str:
        return self.fk.frame

    def add_chunk(self, chunk: np.ndarray, samples: list[np.ndarray] | tuple = ()) -> None:
        """Add a predicted chunk (H, D) and optional extra sampled chunks (each (H, D))."""
        path = self.fk.ee_positions(np.asarray(chunk))
        sample_paths = [self.fk.ee_positions(np.asarray(s)) for s in samples]
        self._chunks.appendleft((path, sample_paths))

    def add_executed(self, q: np.ndarray) -> None:
        """Add a measured joint position (D,) to the executed path."""
        self._executed.append(self.fk.ee_positions(np.asarray(q)[None])[0])

    def add_executed_path(self, qs: np.ndarray) -> None:
        """Add several measured joint positions (N, D) at once."""
        for p in self.fk.ee_positions(np.asarray(qs)):
            self._executed.append(p)

    def polylines(self) -> list[Polyline]:
        """Everything to draw, latest chunk first. Ids are stable per (namespace, slot)."""
        cfg = self.config
        out: list[Polyline] = []
        for age, (path, samples) in enumerate(self._chunks):
            alpha = age_alpha(age, cfg.history, cfg.min_alpha)
            ns = NS_LATEST if age == 0 else NS_HISTORY
            out.append(Polyline(ns, age, path, time_colors(len(path), alpha), cfg.line_width))
            for k, s in enumerate(samples):
                out.append(Polyline(NS_SAMPLES, age * 1000 + k, s,
                                    time_colors(len(s), alpha * 0.7), cfg.sample_line_width))
        for ns, path in self._rtc.items():  # over the time-coloured chunks
            width = cfg.line_width * (1.6 if ns == NS_COMMITTED else 1.2)
            out.append(Polyline(ns, 0, path, np.tile([*RTC_RGB[ns], 1.0], (len(path), 1)),
                                width))
        if len(self._executed) >= 2:
            pts = np.array(self._executed)
            col = np.tile([*EXECUTED_RGB, 1.0], (len(pts), 1))
            out.append(Polyline(NS_EXECUTED, 0, pts, col, cfg.line_width * 0.75))
        return out

    def clear(self) -> None:
        self._rtc = {}
        self._chunks.clear()
        self._executed.clear()


def render_png(polylines: list[Polyline], path: str | Path, title: str = "",
               metric: bool = True, dpi: int = 100) -> Path:
    """Draw polylines in a 3D view plus top (x-y) and side (x-z) projections; write a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(13, 4.5), dpi=dpi)
    ax3 = fig.add_subplot(1, 3, 1, projection="3d")
    ax_xy = fig.add_subplot(1, 3, 2)
    ax_xz = fig.add_subplot(1, 3, 3)
    unit = "m" if metric else "joint units"
    all_pts = [p.points for p in polylines if len(p.points)]
    for pl in polylines:
        if len(pl.points) < 2:
            continue
        segs = np.stack([pl.points[:-1], pl.points[1:]], axis=1)  # (N-1, 2, 3)
        cols = pl.colors[1:]
        lw = max(0.5, pl.width * 400)  # metres of marker width -> points on paper
        ax3.add_collection3d(Line3DCollection(segs, colors=cols, linewidths=lw))
        ax_xy.add_collection(LineCollection(segs[:, :, [0, 1]], colors=cols, linewidths=lw))
        ax_xz.add_collection(LineCollection(segs[:, :, [0, 2]], colors=cols, linewidths=lw))
    if all_pts:
        pts = np.concatenate(all_pts)
        lo, hi = pts.min(0), pts.max(0)
        pad = np.maximum((hi - lo) * 0.1, 1e-3)
        lo, hi = lo - pad, hi + pad
        ax3.set_xlim(lo[0], hi[0])
        ax3.set_ylim(lo[1], hi[1])
        ax3.set_zlim(lo[2], hi[2])
        ax_xy.set_xlim(lo[0], hi[0])
        ax_xy.set_ylim(lo[1], hi[1])
        ax_xz.set_xlim(lo[0], hi[0])
        ax_xz.set_ylim(lo[2], hi[2])
    for ax, (a, b) in ((ax_xy, "xy"), (ax_xz, "xz")):
        ax.set_xlabel(f"{a} [{unit}]")
        ax.set_ylabel(f"{b} [{unit}]")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    ax_xy.set_title("top (x-y)")
    ax_xz.set_title("side (x-z)")
    ax3.set_title("3D")
    handles = [plt.Line2D([], [], color=time_colors(3)[0], label="chunk start"),
               plt.Line2D([], [], color=time_colors(3)[2], label="chunk end"),
               plt.Line2D([], [], color=EXECUTED_RGB, label="executed")]
    ax_xz.legend(handles=handles, loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # Written next to the target and renamed, so a failed render leaves no partial PNG.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
