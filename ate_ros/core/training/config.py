"""The settings every training run shares (torch-free: the CLI declares its options from them).

The field metadata (``help``, ``flag``, ``help_off``, ``cli``) is what ``ate-ros pretrain`` and
``ate-ros steer`` show (``ate_ros.commands.arguments.add_dataclass_options``); its bounds
(``min``, ``min_exclusive``) are enforced by :meth:`TrainConfig.validate` through
:func:`ate_ros.core.config_fields.validate_fields`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.config_fields import validate_fields
from ate_ros.core.data.episode_format import CHUNK_KEYS

_POSITIVE = {"min": 0.0, "min_exclusive": True}


@dataclass
class TrainConfig:
    """Settings shared by pre-training and fine-tuning."""

    data: list[str] = field(metadata={
        "help": "dataset folder(s) in the episode format, comma-separated"})
    out: str = field(metadata={"help": "output policy folder"})
    embodiments: list[str] | None = field(default=None, metadata={
        "help": "embodiment YAML/name per dataset (or one for all); default: each dataset's "
                "embodiment.yaml"})
    steps: int = field(default=3000, metadata={"help": "optimisation steps", "min": 1})
    batch_size: int = field(default=32, metadata={"help": "samples per optimisation step",
                                                  "min": 1})
    lr: float = field(default=3e-4, metadata={"help": "AdamW peak learning rate", **_POSITIVE})
    weight_decay: float = field(default=1e-4, metadata={"cli": False, "min": 0.0})
    warmup_steps: int = field(default=100, metadata={"cli": False, "min": 0})
    grad_clip: float = field(default=1.0, metadata={"cli": False, "min": 0.0})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and the batches"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:i]"})
    log_every: int = field(default=25, metadata={"help": "log the training loss every N steps",
                                                 "min": 1})
    eval_every: int = field(default=500, metadata={
        "help": "evaluate on the val split every N steps", "min": 1})
    save_every: int = field(default=500, metadata={"help": "checkpoint every N steps", "min": 1})
    eval_samples: int = field(default=64, metadata={"help": "val frames used for the action MSE",
                                                    "min": 1})
    eval_num_steps: int | None = field(default=None, metadata={"cli": False, "min": 1})
    resume: bool = field(default=False, metadata={
        "help": "carry on from the checkpoint of an interrupted run in <out>.resume/ (or "
                "train a finished <out> for more --steps); the settings and data must be "
                "those it was written with"})
    overwrite: bool = field(default=False, metadata={"cli": False})
    """Replace what ``out`` holds and discard an interrupted run's checkpoints (the commands'
    ``--overwrite``, :func:`ate_ros.commands.arguments.add_overwrite_argument`)."""
    amp: bool = field(default=True, metadata={"help_off": "disable bf16 autocast on CUDA"})
    show_progress: bool = field(default=True, metadata={"flag": "--no-progress",
                                                        "help_off": "no progress bar"})
    max_episodes: int | None = field(default=None, metadata={
        "help": "use at most N episodes per dataset (quick runs)", "min": 1})
    vision_lr_scale: float = field(default=1.0, metadata={
        "help": "image encoder learning rate relative to --lr (0 freezes it)", "min": 0.0})
    """Learning rate of the image encoder relative to ``lr`` (lower it to keep a pre-trained
    encoder's features while the randomly initialised action head learns; 0 freezes it)."""
    key: str = field(default="auto", metadata={
        "choices": CHUNK_KEYS,
        "help": "action target, as align's --key decides what it chunks: action (refused where "
                "an episode has none), qpos (the next measured pose), auto (action when every "
                "episode has it, qpos when none has; a mix is refused)"})
    patience: int = field(default=0, metadata={
        "help": "stop after N evaluations without a lower val action MSE and keep the best "
                "weights (0: run all --steps)", "min": 0})
    """Stop after this many evaluations (every ``eval_every`` steps) without a lower validation
    action MSE, and save the best evaluated weights (0: run all ``steps``)."""

    def validate(self) -> None:
        if not self.data:
            raise ValueError("no --data given")
        validate_fields(self)
