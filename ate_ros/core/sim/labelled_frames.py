"""Labelled camera frames for pre-training the policy's image encoder: where is each object?

A VLA's vision backbone comes pre-trained (SigLIP, DINO, ...) and already tells objects apart
and locates them. Our compact policy's small CNN is trained from scratch on a few hundred
demonstrations, where the joint state alone predicts most of every chunk; it never learned to
see a 6-pixel ball (``benchmarks/probe_policy_inputs.py`` shuffles its images to show it;
docs/design_notes.md, "Measurements behind the code"). This module makes the stand-in for
that backbone's pre-training: random tabletop scenes of every task, with random arm postures,
rendered from the policy's camera and labelled with the position of each coloured object and
of the fingertip. The labels come from the simulator and are used only to pre-train the
encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_ros.core.sim.env import SimEnv
from ate_ros.core.sim.object_labels import scene_labels

POSTURE_NOISE = 0.6
"""Half-width (rad) of the uniform noise on the home posture: wide enough that the arm sweeps
over the workspace and sometimes hides objects, as it does during an episode."""


@dataclass
class LabelledFrames:
    """Rendered frames and their object labels."""

    images: np.ndarray
    """(N, H, W, 3) uint8."""
    labels: np.ndarray
    """(N, LABEL_DIM) float32, layout :data:`LABEL_NAMES`."""


def render_labelled_frames(embodiments: list[str], tasks: list[str], count: int,
                           seed: int = 0, camera: str | None = None,
                           image_size: tuple[int, int] | None = None) -> LabelledFrames:
    """Render ``count`` random scenes, spread evenly over embodiments x tasks.

    Args:
        embodiments: Simulated embodiments whose arms appear in the frames.
        tasks: Tasks whose object layouts are sampled.
        count: Number of frames.
        seed: Seed of the scenes and postures.
        camera: Camera to render (default: each embodiment's first).
        image_size: (height, width); default: the embodiment's camera size.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    combos = [(e, t) for e in embodiments for t in tasks]
    if not combos:
        raise ValueError("need at least one embodiment and one task")
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for j, (emb, task) in enumerate(combos):
        n = count // len(combos) + (1 if j < count % len(combos) else 0)
        if n == 0:
            continue
        with SimEnv(emb, task, seed=int(rng.integers(2**31)), image_size=image_size) as env:
            cam = camera or env.camera_names[0]
            home = np.asarray(env.spec.home)
            for _ in range(n):
                env.reset(render=False)
                env.set_posture(home + rng.uniform(-POSTURE_NOISE, POSTURE_NOISE, env.dof))
                images.append(env.render(cam))
                labels.append(scene_labels(env))
    order = rng.permutation(len(images))
    return LabelledFrames(np.stack(images)[order], np.stack(labels)[order])
