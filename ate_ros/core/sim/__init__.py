"""MuJoCo tabletop simulation: arms, tasks, scripted experts, recording and evaluation.

- :class:`SimEnv`: one simulated arm doing one task (reset/step, set_targets/advance/render).
- :class:`ScriptedExpert`, :class:`ExpertPolicy`: IK experts (data) and the oracle ChunkPolicy.
- :func:`record_bags`, :func:`record_dataset`: demonstrations as rosbags or episode files.
- :func:`evaluate_policy`: closed-loop success rate through the executor's ChunkScheduler.

The heavy submodules import MuJoCo; import them where needed.
"""

from __future__ import annotations

import os

# Offscreen rendering needs a GL platform chosen before MuJoCo loads; EGL works headless on CPU
# (Mesa) and GPU machines alike. A value the user set wins.
os.environ.setdefault("MUJOCO_GL", "egl")

SIM_EMBODIMENTS = ("sim_arm6", "sim_arm5", "sim_arm7")
"""Every simulated arm (config/embodiments/<name>.yaml)."""
PRETRAIN_EMBODIMENTS = ("sim_arm6", "sim_arm5")
"""Arms whose demonstrations form the pre-training data (6-DoF and 5-DoF)."""
ADAPT_EMBODIMENT = "sim_arm7"
"""The new robot ATE adapts to (7-DoF, different links and limits)."""
SIM_TASKS = ("reach", "push", "pick_color")
"""Task names, see :mod:`ate_ros.core.sim.tasks`."""

__all__ = [
    "ADAPT_EMBODIMENT",
    "PRETRAIN_EMBODIMENTS",
    "SIM_EMBODIMENTS",
    "SIM_TASKS",
    "ExpertConfig",
    "ExpertPolicy",
    "ScriptedExpert",
    "SimEnv",
    "SimObservation",
    "evaluate_policy",
    "record_bags",
    "record_dataset",
    "wilson_interval",
]

_LAZY = {
    "SimEnv": "ate_ros.core.sim.env",
    "SimObservation": "ate_ros.core.sim.env",
    "ExpertConfig": "ate_ros.core.sim.experts",
    "ExpertPolicy": "ate_ros.core.sim.experts",
    "ScriptedExpert": "ate_ros.core.sim.experts",
    "record_bags": "ate_ros.core.sim.recording",
    "record_dataset": "ate_ros.core.sim.recording",
    "evaluate_policy": "ate_ros.core.sim.evaluate",
    "wilson_interval": "ate_ros.core.sim.evaluate",
}


def __getattr__(name: str):
    # Lazy re-exports: `from ate_ros.core.sim import ADAPT_EMBODIMENT` must not load MuJoCo.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
