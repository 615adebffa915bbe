"""The settings every training run shares (torch-free: the CLI declares its options from them).

The field metadata (``help``, ``flag``, ``help_off``, ``cli``) is what ``ate-ros pretrain`` and
``ate-ros steer`` show (``ate_ros.commands.arguments.add_dataclass_options``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ate_ros.core.data.episode_format import CHUNK_KEYS


@dataclass
class TrainConfig:
    """Settings shared by pre-training and fine-tuning."""

    data: list[str] = field(metadata={
        "help": "dataset folder(s) in the episode format, comma-separated"})
    out: str = field(metadata={"help": "output policy folder"})
    embodiments: list[str] | None = field(default=None, metadata={
        "help": "embodiment YAML/name per dataset (or one for all); default: each dataset's "
                "embodiment.yaml"})
    steps: int = field(default=3000, metadata={"help": "optimisation steps"})
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = field(default=1e-4, metadata={"cli": False})
    warmup_steps: int = field(default=100, metadata={"cli": False})
    grad_clip: float = field(default=1.0, metadata={"cli": False})
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:i]"})
    log_every: int = 25
    eval_every: int = field(default=500, metadata={
        "help": "evaluate on the val split every N steps"})
    save_every: int = field(default=500, metadata={"help": "checkpoint every N steps"})
    eval_samples: int = field(default=64, metadata={"help": "val frames used for the action MSE"})
    eval_num_steps: int | None = field(default=None, metadata={"cli": False})
    resume: bool = field(default=False, metadata={
        "help": "carry on from the checkpoint of an interrupted run in <out>.resume/ (or "
                "train a finished <out> for more --steps); the settings and data must be "
                "those it was written with"})
    overwrite: bool = field(default=False, metadata={"cli": False})
    """Replace what ``out`` holds and discard an interrupted run's checkpoints (the commands'
    ``--overwrite``, :func:`ate_ros.commands.arguments.add_overwrite_argument`)."""
    amp: bool = field(default=True, metadata={"help_off": "disable bf16 autocast on CUDA"})
    show_progress: bool = field(default=True, metadata={"flag": "--no-progress"})
    max_episodes: int | None = field(default=None, metadata={
        "help": "use at most N episodes per dataset (quick runs)"})
    vision_lr_scale: float = field(default=1.0, metadata={
        "help": "image encoder learning rate relative to --lr (0 freezes it)"})
    """Learning rate of the image encoder relative to ``lr`` (lower it to keep a pre-trained
    encoder's features while the randomly initialised action head learns; 0 freezes it)."""
    key: str = field(default="auto", metadata={
        "choices": CHUNK_KEYS,
        "help": "action target, as align's --key decides what it chunks: action (refused where "
                "an episode has none), qpos (the next measured pose), auto (action when every "
                "episode has it, qpos when none has; a mix is refused)"})
    patience: int = field(default=0, metadata={
        "help": "stop after N evaluations without a lower val action MSE and keep the best "
                "weights (0: run all --steps)"})
    """Stop after this many evaluations (every ``eval_every`` steps) without a lower validation
    action MSE, and save the best evaluated weights (0: run all ``steps``)."""

    def validate(self) -> None:
        if not self.data:
            raise ValueError("no --data given")
        for name in ("steps", "batch_size", "log_every", "eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if not self.vision_lr_scale >= 0:
            raise ValueError(f"vision_lr_scale must be >= 0, got {self.vision_lr_scale}")
