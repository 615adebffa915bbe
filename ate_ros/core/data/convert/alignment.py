"""Time alignment of a bag's streams onto the output grid, and the episodes that result.

Per clock segment, the joint stream's contiguous runs are gridded at the output rate; at each
tick every stream takes its newest message no older than its max age (a command: until its last
point plus the max age; the environment state, when the bag has one: the joints' max age).
Ticks with a stale stream are invalid; the valid ones form episodes,
cut at gaps (``gap_policy="split"``) or not (``"drop"``), and at episode markers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ate_ros.core.data import resample as R
from ate_ros.core.data.convert.spec import (
    DROP_JOINT_GAP,
    DROP_NO_NEXT,
    DROP_SHORT,
    DROP_STALE,
    FORWARD_JUMP_S,
    ROLE_CAMERA,
    ROLE_INSTRUCTION,
    ROLE_MARKER,
)
from ate_ros.core.data.convert.streams import BagStreams


@dataclass
class Alignment:
    """Episodes of one bag and the frame accounting (``candidates == kept + sum(dropped)``).

    Each episode is ``{"segment": clock segment, "parts": [(row, ticks)]}``: ``row`` maps
    ``"t"`` to the grid (ns) and each stream's topic to the message index used at each tick
    (``"next"``: the next joint state, for ``next_state`` actions); ``ticks`` selects the kept
    ticks of that row.
    """

    episodes: list[dict[str, Any]] = field(default_factory=list)
    candidates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def align(bs: BagStreams) -> Alignment:
    """Grid ticks, freshness per stream, and the episodes (lists of tick rows) of a bag."""
    js, spec, timing = bs.joints, bs.spec, bs.timing
    frames_dropped: Counter[str] = Counter()
    candidates = 0
    episodes: list[dict[str, Any]] = []
    marker_t = (bs.marker.stamps[bs.marker.keep_mask()] if bs.marker is not None
                else np.zeros(0, np.int64))
    kept_by_stream = {t: np.flatnonzero(s.keep_mask()) for t, s in bs.streams.items()}
    n_seg = len(bs.boundaries) + 1
    for seg in range(n_seg):
        jk = kept_by_stream[js.topic]
        jk = jk[js.segment[jk] == seg]
        if len(jk) == 0:
            continue
        seg_rows: list[dict[str, np.ndarray]] = []
        prev_end = None
        for a, b in R.split_on_gaps(js.stamps[jk], timing.joint_age):
            start, end = int(js.stamps[jk[a]]), int(js.stamps[jk[b - 1]])
            if prev_end is not None:
                gap_s = (start - prev_end) / 1e9
                if gap_s > FORWARD_JUMP_S:
                    bs.warnings.append(f"{js.topic}: forward clock jump of {gap_s:.1f} s")
                else:  # ticks the previous grid would have had before this run starts
                    missed = max(0, -(-(start - prev_end) // timing.period) - 1)
                    frames_dropped[DROP_JOINT_GAP] += missed
                    candidates += missed
            grid = R.make_grid(start, end, timing.period)
            prev_end = int(grid[-1])
            candidates += len(grid)
            row = {"t": grid, "valid": np.ones(len(grid), bool),
                   "reason": np.full(len(grid), "", dtype=object)}
            for topic, s in bs.streams.items():
                if s.role in (ROLE_INSTRUCTION, ROLE_MARKER):
                    continue
                kk = kept_by_stream[topic]
                kk = kk[s.segment[kk] == seg]
                if s is bs.action:
                    # A command stays valid until its last point plus the max age.
                    ages = np.array([int(s.payload[i][0][-1] * 1e9) for i in kk],
                                    dtype=np.int64) + timing.action_age
                    idx, fresh = R.asof(s.stamps[kk], grid, ages)
                else:
                    # The environment state is a measurement like the joints: same max age.
                    age = timing.image_age if s.role.startswith(ROLE_CAMERA) else \
                        timing.joint_age
                    idx, fresh = R.asof(s.stamps[kk], grid, age)
                row[topic] = np.where(idx >= 0, kk[np.maximum(idx, 0)], -1)
                newly = row["valid"] & ~fresh
                row["reason"][newly] = DROP_STALE + (s.role.replace(ROLE_CAMERA, "")
                                                     if s.role.startswith(ROLE_CAMERA)
                                                     else s.role)
                row["valid"] &= fresh
            if bs.action_source == "next_state":
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
    return Alignment(episodes, candidates, dict(frames_dropped))
