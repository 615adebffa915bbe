"""Checkpoints that let an interrupted ``ate-ros align`` carry on (``--resume``).

The output folder appears only when the whole run succeeded (it is written to a temporary folder
and renamed), so a run stopped half way (Ctrl-C, a lost SSH session, a job killed by its time
limit) leaves nothing there. What survives is a sibling folder, ``<out>.resume/``:

- ``align_config.json``: the run's settings; a resumed run must have the same ones, or the
  weights it continues from would belong to another run. A run without ``--resume`` refuses to
  start while the folder is there, rather than throw the checkpoints away.
- ``<vae>/`` per VAE trained (``stage1``, ``stage2``, ``control``): the shared loop's checkpoint
  (:meth:`~ate_ros.core.training.loop.Optimization.save`: weights, optimiser, LR schedule,
  torch RNG) every ``checkpoint_every`` epochs, with what is the VAE trainer's own: epochs done,
  the shuffling generator, the early-stopping record and best weights, the logged history. A VAE
  whose training finished is marked done and is loaded, not trained again.

Every save is atomic (a folder replaced at once), so a run killed while saving resumes from the
save before. The folder is removed once the output is in place.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ate_ros.core.training.files import CheckpointError, read_json, write_json
from ate_ros.core.training.loop import EarlyStopping, Optimization
from ate_ros.core.training.output_guard import RESUME_SUFFIX, resume_dir

__all__ = ["RESUME_SUFFIX", "AlignCheckpoints", "StageProgress", "resume_dir"]

logger = logging.getLogger(__name__)

SETTINGS_FILE = "align_config.json"
NOT_COMPARED = ("resume", "checkpoint_every", "device", "progress", "plots", "tensorboard")
"""Settings a resumed run may change: where and how it runs, not what it computes."""

_GENERATOR = "generator"
_BEST = "best."


@dataclass
class StageProgress:
    """Where a VAE's training stood at its last checkpoint."""

    epochs_done: int
    steps: int
    seconds: float
    step_seconds: list[float]
    done: bool
    summary: dict[str, Any]


class AlignCheckpoints:
    """The ``<out>.resume/`` folder of one alignment run.

    Args:
        out: The run's output folder.
        settings: The run's configuration (``AlignConfig.to_dict()``).
        resume: Carry on from the checkpoints there.
        writer: This process writes checkpoints (the main rank; the others only read).
        every: Epochs between checkpoints.

    Raises:
        CheckpointError: Checkpoints are there but ``resume`` is False (hours of training are
            not thrown away by a forgotten flag), or they were written with other settings.
    """

    def __init__(self, out: str | Path, settings: dict[str, Any], *, resume: bool,
                 writer: bool = True, every: int = 1) -> None:
        self.root = resume_dir(out)
        self.settings = settings
        self.writer = writer
        self.every = max(1, int(every))
        self.resume = resume
        saved_file = self.root / SETTINGS_FILE
        if not saved_file.is_file():
            if resume:
                logger.info("--resume: no checkpoints in %s; starting from the beginning",
                            self.root)
            return
        if not resume:
            raise CheckpointError(
                f"an interrupted run left checkpoints in {self.root}: pass --resume to carry "
                "on from them, or remove that folder to start over")
        wanted = {k: v for k, v in settings.items() if k not in NOT_COMPARED}
        saved = {k: v for k, v in read_json(saved_file).items() if k not in NOT_COMPARED}
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if differ:
            shown = "; ".join(f"{k}: {saved.get(k)!r} then, {wanted.get(k)!r} now"
                              for k in differ[:4])
            raise CheckpointError(
                f"cannot resume from {self.root}: it was written with other settings ({shown})."
                " Run with the same settings, or remove that folder to start over")
        logger.info("resuming from the checkpoints in %s", self.root)

    def load(self, name: str, optim: Optimization, stopper: EarlyStopping,
             generator: torch.Generator, history: dict[str, list]) -> StageProgress | None:
        """Restore VAE ``name``'s training state into the objects given; None: start it."""
        folder = self.root / name
        if not (self.resume and Optimization.has_checkpoint(folder)):
            return None
        optim.load(folder)
        state = Optimization.read_state(folder)["align"]
        tensors = Optimization.read_tensors(folder)
        generator.set_state(tensors[_GENERATOR])
        stopper.load_state(state["stopper"], {k[len(_BEST):]: v for k, v in tensors.items()
                                              if k.startswith(_BEST)})
        for key, points in state["history"].items():
            history[key] = [tuple(p) for p in points]
        logger.info("%s: %s", name, "already trained" if state["done"] else
                    f"resuming after epoch {state['epochs_done']}")
        return StageProgress(epochs_done=int(state["epochs_done"]), steps=int(state["steps"]),
                             seconds=float(state["seconds"]),
                             step_seconds=list(state["step_seconds"]),
                             done=bool(state["done"]), summary=dict(state.get("summary", {})))

    def due(self, epochs_done: int) -> bool:
        """A checkpoint is written after this many epochs."""
        return self.writer and epochs_done % self.every == 0

    def save(self, name: str, optim: Optimization, stopper: EarlyStopping,
             generator: torch.Generator, history: dict[str, list],
             progress: StageProgress) -> None:
        """Checkpoint VAE ``name`` (the model in ``optim`` as it is now: the last weights)."""
        if not self.writer:
            return
        if not (self.root / SETTINGS_FILE).is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(self.root / SETTINGS_FILE, self.settings)
        record, best = stopper.state()
        tensors = {_GENERATOR: generator.get_state(),
                   **{_BEST + k: v for k, v in best.items()}}
        prefix = f"{name}/"
        optim.save(self.root / name, progress.steps, extra={"align": {
            "epochs_done": progress.epochs_done, "steps": progress.steps,
            "seconds": progress.seconds, "step_seconds": progress.step_seconds,
            "done": progress.done, "summary": progress.summary, "stopper": record,
            "history": {k: [list(p) for p in v] for k, v in history.items()
                        if k.startswith(prefix)}}}, tensors=tensors)

    def finish(self) -> None:
        """The output is in place: the checkpoints are no longer needed."""
        if self.writer:
            shutil.rmtree(self.root, ignore_errors=True)
