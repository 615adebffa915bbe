"""Object labels of a simulated scene: where is each object?

The simulation's low-dimensional *environment state* (:func:`environment_state`, layout
:data:`ENV_STATE_NAMES`) holds where each object is the way a low-dim policy needs them. First the
task's objects as the instruction names them: the *target* (the ball to reach, the block to
touch or to push) as its offset from the fingertip, and the *goal* (where the target must go:
push's disc) as its offset from the target, each with a ``present`` flag (0 and zeros when the
task has none). That is what an instruction-conditioned detector (an open-vocabulary model
queried with the instruction's noun phrases) plus forward kinematics reports on a real cell,
and what robosuite's ``object-to-eef`` and goal observations give a policy. Then per colour the
object's offset from the fingertip, and the fingertip itself. The target is named in the state
because with the colour slots alone a policy's instruction-to-slot attention does not follow
the instruction (docs/design_notes.md, "Measurements behind the code"); the image track still
has to ground the instruction itself.

The labels (:func:`scene_labels`) are the targets of the image encoder's pre-training
(:mod:`ate_ros.core.sim.labelled_frames` renders the frames). Label layout (``LABEL_NAMES``):
per colour in :data:`COLORS`, ``present`` (0/1) and the object's centre (x, y, z) in the world
frame (zeros when absent); then the fingertip (x, y, z). Each scene holds at most one object per
colour (reach: one ball; push: the red block and the green goal disc; pick_color: two blocks of
different colours).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ate_ros.core.sim.arms import COLORS
from ate_ros.core.sim.tasks import PickColorTask, PushTask, ReachTask

if TYPE_CHECKING:
    from ate_ros.core.sim.env import SimEnv

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
LABEL_NAMES: tuple[str, ...] = tuple(
    f"{c}/{k}" for c in COLOR_NAMES for k in ("present", "x", "y", "z")) + ("tip/x", "tip/y",
                                                                           "tip/z")
LABEL_DIM = len(LABEL_NAMES)
TASK_OBJECTS: tuple[str, ...] = ("target", "goal")
"""The task's objects at the head of the environment state (see the module docstring)."""
ENV_STATE_NAMES: tuple[str, ...] = tuple(
    f"{o}/{k}" for o in TASK_OBJECTS + COLOR_NAMES for k in ("present", "dx", "dy", "dz")
) + ("tip/x", "tip/y", "tip/z")
"""Layout of :func:`environment_state` (one name per value): target minus fingertip, goal minus
target, per colour object minus fingertip, then the fingertip (world frame, m)."""
ENV_STATE_DIM = len(ENV_STATE_NAMES)


def _color_of(rgba: np.ndarray) -> str:
    """The palette colour nearest to a geom's RGB."""
    rgb = np.asarray(rgba[:3])
    return min(COLOR_NAMES, key=lambda c: float(np.sum((np.asarray(COLORS[c][:3]) - rgb) ** 2)))


def scene_labels(env: SimEnv) -> np.ndarray:
    """(LABEL_DIM,) labels of the env's current scene (after reset and forward kinematics)."""
    s, task = env.scene, env.task
    objects: list[tuple[str, np.ndarray]] = []
    if isinstance(task, ReachTask):
        objects.append((task.color, s.data.mocap_pos[s.ball_mocap]))
    elif isinstance(task, PushTask):
        objects.append((_color_of(s.model.geom_rgba[s.block_geom]), s.block_pos))
        goal_geom = s.model.geom("goal").id
        objects.append((_color_of(s.model.geom_rgba[goal_geom]),
                        s.data.mocap_pos[s.goal_mocap]))
    elif isinstance(task, PickColorTask):
        for k, color in enumerate(task.colors):
            objects.append((color, s.data.mocap_pos[s.touch_mocap[k]]))
    else:
        raise ValueError(f"no object labels for task {task.name!r}")
    out = np.zeros(LABEL_DIM, np.float32)
    for color, pos in objects:
        i = 4 * COLOR_NAMES.index(color)
        if out[i]:
            raise ValueError(f"two {color} objects in one {task.name} scene")
        out[i] = 1.0
        out[i + 1:i + 4] = pos
    out[-3:] = s.tip
    return out


def environment_state(env: SimEnv) -> np.ndarray:
    """(ENV_STATE_DIM,) float32 in the layout of :data:`ENV_STATE_NAMES`: the task's target
    and goal, per colour ``present`` and the object's offset from the fingertip (zeros when
    absent), then the fingertip position (world frame)."""
    labels = scene_labels(env)
    tip = labels[-3:]
    colours = labels[:-3].copy()
    for i in range(len(COLOR_NAMES)):
        if colours[4 * i]:
            colours[4 * i + 1:4 * i + 4] -= tip
    task = np.zeros(4 * len(TASK_OBJECTS), np.float32)
    state = env.task_state()
    target = state.get("target", state.get("block"))
    if target is not None:
        task[0], task[1:4] = 1.0, np.asarray(target, np.float32) - tip
        if "goal" in state:  # on the table plane: the target slides there
            goal = np.asarray(state["goal"], np.float32)[:2]
            task[4], task[5:7] = 1.0, goal - np.asarray(target, np.float32)[:2]
    return np.concatenate([task, colours, tip]).astype(np.float32)


def label_weights(labels: np.ndarray) -> np.ndarray:
    """(N, LABEL_DIM) loss weights: presence flags and the fingertip always count; an object's
    position only where the object is in the scene."""
    w = np.ones_like(labels, dtype=np.float32)
    for i in range(len(COLOR_NAMES)):
        w[:, 4 * i + 1:4 * i + 4] = labels[:, 4 * i:4 * i + 1]
    return w
