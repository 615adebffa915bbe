"""Configurations of the alignment VAEs and of the two-stage alignment run.

:class:`VAEConfig` rebuilds a model (it is stored in ``config.json``); :class:`StageConfig` holds
one stage's optimisation and loss weights; :class:`AlignConfig` is the whole pipeline
(datasets, both stages, the control VAE) that :func:`ate_ros.core.align.train_alignment` runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ate_ros.core.config_fields import strict_from_dict, validate_fields
from ate_ros.core.embodiment import UNIFIED_DIM

ARCH_TRANSFORMER = "transformer"
ARCH_MLP = "mlp"
ARCHS = (ARCH_TRANSFORMER, ARCH_MLP)
RECON_LOSSES = ("smooth_l1", "mse", "l1")
COVARIANCES = ("diag", "full")
CONTROL_PRIORS = ("none", "standard")
PRESETS = ("small", "mlp", "paper")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass
class VAEConfig:
    """Architecture of one action VAE (input: a (H, 128) unified chunk plus its mask)."""

    arch: str = field(default=ARCH_TRANSFORMER, metadata={
        "help": f"one of {ARCHS}", "choices": ARCHS})
    chunk_size: int = field(default=16, metadata={"help": "H: actions per chunk", "min": 1})
    latent_dim: int = field(default=16, metadata={
        "help": "Z: flattened latent size (num_latent_tokens * per-token width)", "min": 1})
    num_latent_tokens: int = field(default=1, metadata={
        "help": "transformer: latent tokens (each Z / num_latent_tokens wide)", "min": 1})
    d_model: int = field(default=64, metadata={"help": "transformer width", "min": 1})
    num_encoder_layers: int = field(default=2, metadata={
        "help": "transformer encoder depth", "min": 1})
    num_decoder_layers: int = field(default=2, metadata={
        "help": "transformer decoder depth", "min": 1})
    num_heads: int = field(default=4, metadata={"help": "attention heads", "min": 1})
    ffn_dim: int = field(default=128, metadata={
        "help": "transformer feed-forward width", "min": 1})
    mlp_hidden: int = field(default=256, metadata={"help": "mlp: hidden width", "min": 1})
    mlp_layers: int = field(default=2, metadata={
        "help": "mlp: hidden layers per encoder/decoder", "min": 1})
    dropout: float = field(default=0.0, metadata={
        "help": "dropout in the transformer / mlp", "min": 0.0, "max": 1.0, "max_exclusive": True})
    action_dim: int = field(default=UNIFIED_DIM, metadata={
        "help": "width of the unified action space (fixed)", "min": 1})

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.latent_dim % self.num_latent_tokens:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be divisible by "
                             f"num_latent_tokens ({self.num_latent_tokens})")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if self.action_dim != UNIFIED_DIM:
            raise ValueError(f"action_dim must be {UNIFIED_DIM} (the unified space)")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VAEConfig:
        """Named sizes.

        - ``small``: transformer, width 64, 2+2 layers, Z = 16 (~0.2 M params; CPU minutes).
        - ``mlp``: a 2x256 MLP encoder/decoder, Z = 16, for tiny robots and slow CPUs.
        - ``paper``: the paper's transformer: one 512-d latent token, 9 encoder + 9 decoder
          layers, 4 heads, FFN 1024, width 512 (~52 M params).
        """
        _check_choice("preset", name, PRESETS)
        base: dict[str, Any] = {
            "small": {},
            "mlp": {"arch": ARCH_MLP},
            "paper": {"latent_dim": 512, "d_model": 512, "num_encoder_layers": 9,
                      "num_decoder_layers": 9, "num_heads": 4, "ffn_dim": 1024},
        }[name]
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        return strict_from_dict(cls, data)


@dataclass
class StageConfig:
    """Optimisation and loss weights of one VAE training stage.

    Loss = recon + kl_weight * KL + mmd_weight * MMD, where recon is the mean over masked
    elements of the normalised chunk and KL is the mean over latent dimensions (the reference's
    ``mean`` reduction, so ``kl_weight`` is comparable to its 7.5e-5).
    """

    epochs: int = field(default=60, metadata={"help": "maximum epochs", "min": 1})
    batch_size: int = field(default=128, metadata={
        "help": "chunks per step (per process)", "min": 1})
    lr: float = field(default=1e-3, metadata={
        "help": "AdamW peak learning rate", "min": 0.0, "min_exclusive": True})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay", "min": 0.0})
    warmup_steps: int = field(default=50, metadata={"help": "linear LR warm-up steps", "min": 0})
    min_lr_ratio: float = field(default=0.05, metadata={
        "help": "cosine floor / peak LR", "min": 0.0, "max": 1.0})
    grad_clip: float = field(default=1.0, metadata={
        "help": "gradient norm clip (0: off)", "min": 0.0})
    kl_weight: float = field(default=1e-3, metadata={"help": "weight of the KL term", "min": 0.0})
    mmd_weight: float = field(default=1.0, metadata={"help": "weight of the MMD term", "min": 0.0})
    recon_loss: str = field(default="smooth_l1", metadata={
        "help": f"one of {RECON_LOSSES}", "choices": RECON_LOSSES})
    patience: int = field(default=15, metadata={
        "help": "early stop after this many epochs without val-loss improvement (0: off)",
        "min": 0})
    max_steps_per_epoch: int = field(default=0, metadata={
        "help": "cap on steps per epoch (0: a full pass over the training chunks)", "min": 0})

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass
class AlignConfig:
    """The whole two-stage alignment run (what ``ate-ros align`` builds from its flags).

    ``pretrain``/``embodiment_pre`` are parallel lists (one embodiment per dataset). With
    ``stage1_dir`` set, stage 1 and the prior are loaded from a previous run instead of trained
    (``pretrain`` is then only used for the PCA plot, and may be empty). Without ``adapt`` only
    stage 1 and the prior are produced (a reusable stage-1 folder).

    Any dataset may be a LeRobotDataset folder (``meta/info.json``, or written
    ``lerobot:<dir>``; :mod:`ate_ros.core.data.lerobot_reader`). Its embodiment may then be
    left empty: it is taken from the dataset (``embodiment.yaml``, else ``robot_type``).
    """

    out: str = field(default="", metadata={"help": "output folder (replaced atomically)"})
    pretrain: list[str] = field(default_factory=list, metadata={
        "help": "pre-training dataset folder(s), comma separated: our episode format, or "
                "LeRobotDatasets (meta/info.json, or lerobot:<dir>)"})
    embodiment_pre: list[str] = field(default_factory=list, metadata={
        "help": "embodiment YAML (or name) per pre-training dataset, comma separated ('' for "
                "LeRobotDatasets: read from each dataset)"})
    adapt: str = field(default="", metadata={
        "help": "adaptation dataset folder (our format, or a LeRobotDataset: its action column "
                "per episode; docs/lerobot.md)"})
    embodiment_ada: str = field(default="", metadata={
        "help": "adaptation embodiment YAML or name ('' for a LeRobotDataset: its "
                "embodiment.yaml, else its robot_type)"})
    stage1_dir: str = field(default="", metadata={
        "help": "skip stage 1: reuse the VAE and q_pre (the prior) of this earlier `ate-ros "
                "align` output", "flag": "--stage1"})
    preset: str = field(default="small", metadata={"help": f"VAE size, one of {PRESETS}",
                                                   "choices": PRESETS})
    chunk_size: int = field(default=16, metadata={"help": "chunk size H for both stages",
                                                  "flag": "--chunk", "min": 1})
    vae_overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "VAEConfig fields overriding the preset"})
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=150))
    control: bool = field(default=True, metadata={
        "help": "also train an unaligned control VAE on the adaptation data (quality report)",
        "help_off": "skip the unaligned control VAE of the quality report"})
    control_prior: str = field(default="none", metadata={
        "help": "control VAE regulariser: 'standard' = stage-1 losses toward N(0, I) "
                "(the paper's adaptation-only ablation), 'none' = reconstruction only",
        "choices": CONTROL_PRIORS})
    covariance: str = field(default="diag", metadata={
        "help": f"Gaussian summaries of q_pre / the adaptation latents, one of {COVARIANCES}",
        "choices": COVARIANCES})
    key: str = field(default="auto", metadata={
        "help": "array to chunk: auto = action when present, else qpos",
        "choices": ("auto", "action", "qpos")})
    short: str = field(default="drop", metadata={
        "help": "episodes shorter than the chunk: drop | pad | error",
        "choices": ("drop", "pad", "error")})
    norm_mode: str = field(default="mean_std", metadata={
        "help": "mean_std | min_max", "choices": ("mean_std", "min_max")})
    mmd_c: float = field(default=2.0, metadata={
        "help": "IMQ kernel constant on the mean-over-dims squared distance (see losses.py)",
        "min": 0.0, "min_exclusive": True})
    mmd_unbiased: bool = field(default=False, metadata={"help": "unbiased MMD estimator"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda[:i]"})
    amp: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA (off on CPU)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    plots: bool = field(default=True, metadata={"help": "write PNG plots",
                                                "help_off": "write no PNG plots"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard scalars"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars",
                                                   "help_off": "no tqdm progress bars"})
    resume: bool = field(default=False, metadata={
        "help": "carry on from the checkpoints an interrupted run with the same settings left "
                "in <out>.resume/ (without it, a run refuses to start while they are there)"})
    checkpoint_every: int = field(default=1, metadata={
        "help": "epochs between checkpoints (what an interrupted run can resume from)", "min": 1})

    def __post_init__(self) -> None:
        if isinstance(self.stage1, dict):
            self.stage1 = StageConfig(**self.stage1)
        if isinstance(self.stage2, dict):
            self.stage2 = StageConfig(**self.stage2)
        self.pretrain = [str(p) for p in self.pretrain]
        self.embodiment_pre = [str(e) for e in self.embodiment_pre]
        validate_fields(self)
        self._embodiments_from_lerobot()
        if not self.out:
            raise ValueError("out (the output folder) must be set")
        if not self.stage1_dir:
            if not self.pretrain:
                raise ValueError("give pre-training datasets (pretrain) or an existing stage-1 "
                                 "output (stage1_dir)")
            if len(self.pretrain) != len(self.embodiment_pre):
                raise ValueError(
                    f"{len(self.pretrain)} pre-training datasets but {len(self.embodiment_pre)} "
                    "pre-training embodiments; give one embodiment per dataset")
        elif self.embodiment_pre and len(self.pretrain) != len(self.embodiment_pre):
            raise ValueError("pretrain and embodiment_pre must have the same length")
        if self.adapt and not self.embodiment_ada:
            raise ValueError("adapt needs embodiment_ada")
        if Path(self.out).resolve() == Path(self.stage1_dir).resolve() and self.stage1_dir:
            raise ValueError("out must differ from stage1_dir (the output folder is replaced)")
        self.vae_config()  # validate overrides now, not after stage 1

    def _embodiments_from_lerobot(self) -> None:
        """Fill the embodiments a LeRobotDataset carries and the user left out."""
        from ate_ros.core.data.lerobot_reader import embodiment_spec, is_lerobot_dataset

        if self.adapt and not self.embodiment_ada and is_lerobot_dataset(self.adapt):
            self.embodiment_ada = embodiment_spec(self.adapt)
        if self.pretrain and not self.embodiment_pre and all(
                is_lerobot_dataset(p) for p in self.pretrain):
            self.embodiment_pre = [embodiment_spec(p) for p in self.pretrain]

    def vae_config(self) -> VAEConfig:
        return VAEConfig.preset(self.preset, **{"chunk_size": self.chunk_size,
                                                **self.vae_overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
