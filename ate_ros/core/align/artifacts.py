"""The alignment output folder (``ate-ros align --out``) and :func:`load_alignment`.

Layout (no pickles anywhere)::

    OUT/
      config.json          # format, VAE configs, norm stats, embodiments, mask, run config
      stage1.safetensors   # stage-1 VAE ("model.*") + its normalisation ("norm.*")
      stage2.safetensors   # stage-2 (adaptation) VAE + its normalisation (absent: stage-1 only)
      prior.safetensors    # "prior.mean/cov" = q_pre; "adapt.mean/cov" = stage-2 aggregate
                           #  posterior over the adaptation chunks (OOD monitor)
      metrics.json         # quality report + loss histories
      plots/*.png          # loss curves, latent PCA
      checkpoints/         # best/last weights of every trained VAE
      tensorboard/

The steer helper uses :class:`AlignmentBundle` (``encode``, ``ood_score``) with frozen weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ate_ros.core.align.configuration_vae import VAEConfig
from ate_ros.core.align.modeling_vae import ActionVAE
from ate_ros.core.align.prior import GaussianLatent
from ate_ros.core.config_types import check_types
from ate_ros.core.embodiment import UNIFIED_DIM, Embodiment
from ate_ros.core.normalization import NORM_MODES, NormStats
from ate_ros.core.training.files import (
    CONFIG_FILE,
    CheckpointError,
    SavedConfig,
    load_state_dict_checked,
    load_tensors,
    save_tensors,
    write_json,
)

FORMAT_NAME = "ate_ros.alignment"
FORMAT_VERSION = 1
STAGE1_FILE = "stage1.safetensors"
STAGE2_FILE = "stage2.safetensors"
PRIOR_FILE = "prior.safetensors"
MODEL_PREFIX = "model."
NORM_PREFIX = "norm"
PRIOR_KEY = "prior"
ADAPT_KEY = "adapt"


class StageModel:
    """A trained VAE plus the normalisation of its inputs (stats are saved, never refit)."""

    def __init__(self, model: ActionVAE, norm: NormStats) -> None:
        if norm.dim != UNIFIED_DIM:
            raise CheckpointError(f"normalisation has {norm.dim} dims, expected {UNIFIED_DIM}")
        self.model, self.norm = model, norm

    @property
    def config(self) -> VAEConfig:
        return self.model.config

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {MODEL_PREFIX + k: v for k, v in self.model.state_dict().items()}
        out.update(self.norm.to_tensors(NORM_PREFIX))
        return out

    def save(self, path: str | Path) -> None:
        save_tensors(path, self.to_tensors(), metadata={"format": FORMAT_NAME})

    @classmethod
    def load(cls, path: str | Path, vae_config: VAEConfig, norm_mode: str,
             device: str | torch.device = "cpu") -> StageModel:
        tensors = load_tensors(path, device)
        try:
            model = ActionVAE(vae_config).to(device)
        except (ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError) as exc:
            raise CheckpointError(f"{Path(path).parent / CONFIG_FILE}: the VAE settings build "
                                  f"no model ({type(exc).__name__}: {exc})") from exc
        weights = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items()
                   if k.startswith(MODEL_PREFIX)}
        load_state_dict_checked(model, weights, str(path))
        try:
            norm = NormStats.from_tensors(tensors, NORM_PREFIX, norm_mode)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        return cls(model, norm)

    def frozen(self) -> StageModel:
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self


def save_prior(path: str | Path, prior: GaussianLatent, adapt: GaussianLatent | None) -> None:
    tensors = prior.to_tensors(PRIOR_KEY)
    if adapt is not None:
        tensors.update(adapt.to_tensors(ADAPT_KEY))
    save_tensors(path, tensors, metadata={"format": FORMAT_NAME})


def write_alignment(folder: str | Path, stage1: StageModel, stage2: StageModel | None,
                    prior: GaussianLatent, adapt: GaussianLatent | None,
                    embodiment_ada: Embodiment | None, embodiment_pre: list[Embodiment],
                    covariance: str = "diag", extra: dict[str, Any] | None = None) -> None:
    """Write weights, prior and ``config.json`` into ``folder`` (an existing, empty folder)."""
    folder = Path(folder)
    stage1.save(folder / STAGE1_FILE)
    if stage2 is not None:
        stage2.save(folder / STAGE2_FILE)
    save_prior(folder / PRIOR_FILE, prior, adapt)
    last = stage2 if stage2 is not None else stage1
    write_json(folder / CONFIG_FILE, {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "latent_dim": last.config.latent_dim, "chunk_size": last.config.chunk_size,
        "covariance": covariance,
        "stage1": {"vae": stage1.config.to_dict(), "norm": stage1.norm.to_json()},
        "stage2": ({"vae": stage2.config.to_dict(), "norm": stage2.norm.to_json()}
                   if stage2 is not None else None),
        "mask": embodiment_ada.slots.tolist() if embodiment_ada is not None else [],
        "embodiment_ada": embodiment_ada.to_dict() if embodiment_ada is not None else None,
        "embodiment_pre": [e.to_dict() for e in embodiment_pre],
        **(extra or {}),
    })


def _stage_entry(cfg: SavedConfig, name: str) -> tuple[VAEConfig, str]:
    section = cfg.section(name)
    norm = section.get("norm")
    if not isinstance(norm, dict) or "mode" not in norm:
        raise CheckpointError(f"{cfg.file}: {name}.norm.mode is missing")
    mode = norm["mode"]
    if not isinstance(mode, str) or mode not in NORM_MODES:
        raise CheckpointError(f"{cfg.file}: {name}.norm.mode: {mode!r} is not one of "
                              f"{list(NORM_MODES)}")

    def from_dict(entry: dict[str, Any]) -> VAEConfig:
        check_types(VAEConfig, entry.get("vae"), prefix=f"{name}.vae.")
        return VAEConfig.from_dict(entry["vae"])

    return cfg.build(name, from_dict), mode


def read_alignment_config(folder: str | Path) -> SavedConfig:
    """The checked ``config.json`` of an alignment output (errors name the file and field)."""
    return SavedConfig.read(folder, "an alignment output", "format", FORMAT_NAME,
                            FORMAT_VERSION)


def load_stage1(folder: str | Path, device: str | torch.device = "cpu"
                ) -> tuple[StageModel, GaussianLatent, dict[str, Any]]:
    """Stage-1 VAE, q_pre and config.json of an earlier run (for ``--stage1`` reuse)."""
    folder = Path(folder)
    cfg = read_alignment_config(folder)
    vae_cfg, mode = _stage_entry(cfg, "stage1")
    stage1 = StageModel.load(folder / STAGE1_FILE, vae_cfg, mode, device)
    tensors = load_tensors(folder / PRIOR_FILE, device)
    prior = GaussianLatent.from_tensors(tensors, PRIOR_KEY)
    if prior.dim != vae_cfg.latent_dim:
        raise CheckpointError(f"{folder / PRIOR_FILE}: prior has {prior.dim} dims but the "
                              f"stage-1 VAE has latent_dim {vae_cfg.latent_dim}")
    return stage1, prior, cfg.data


class AlignmentBundle:
    """Frozen stage-1/stage-2 encoders plus q_pre and the adaptation latent distribution.

    See the module docstring of :mod:`ate_ros.core.align` for the contract.
    """

    def __init__(self, stage1: StageModel, stage2: StageModel, prior: GaussianLatent,
                 adapt: GaussianLatent, embodiment_ada: Embodiment,
                 embodiment_pre: list[Embodiment], config: dict[str, Any],
                 device: torch.device) -> None:
        Z = stage2.config.latent_dim
        if stage1.config.latent_dim != Z:
            raise CheckpointError(f"stage-1 latent_dim {stage1.config.latent_dim} != stage-2 "
                                  f"latent_dim {Z}")
        for name, g in (("prior", prior), ("adapt", adapt)):
            if g.dim != Z:
                raise CheckpointError(f"{name} distribution has {g.dim} dims, expected {Z}")
        self.stage1, self.stage2 = stage1.frozen(), stage2.frozen()
        self.device = device
        self.embodiment_ada = embodiment_ada
        self.embodiment_pre: Embodiment | list[Embodiment] = (
            embodiment_pre[0] if len(embodiment_pre) == 1 else embodiment_pre)
        self.mask: np.ndarray = embodiment_ada.mask
        self.config = config
        self._prior, self._adapt = prior.to(device), adapt.to(device)
        self._mask_t = torch.as_tensor(self.mask, device=device)

    # ----- contract -----------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return self.stage2.config.chunk_size

    @property
    def latent_dim(self) -> int:
        return self.stage2.config.latent_dim

    @property
    def prior_mean(self) -> torch.Tensor:
        return self._prior.mean

    @property
    def prior_cov(self) -> torch.Tensor:
        return self._prior.cov

    @property
    def adapt_mean(self) -> torch.Tensor:
        return self._adapt.mean

    @property
    def adapt_cov(self) -> torch.Tensor:
        return self._adapt.cov

    @property
    def prior(self) -> GaussianLatent:
        return self._prior

    @property
    def adapt(self) -> GaussianLatent:
        return self._adapt

    def encode(self, chunks: torch.Tensor, stage: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, 128) unified chunks in joint units -> (mu, logvar), each (B, Z).

        Normalisation happens inside; off-mask slots are ignored; differentiable w.r.t.
        ``chunks`` (the VAE weights are frozen).
        """
        sm, x, mask = self._encoder_input(chunks, stage)
        return sm.model.encode(x, mask)

    def encode_mean(self, chunks: torch.Tensor, stage: int = 2) -> torch.Tensor:
        """``encode(chunks, stage)[0]``, the posterior mean (B, Z), at less cost (see
        ``ActionVAE.encode_mean``): what guidance differentiates through."""
        sm, x, mask = self._encoder_input(chunks, stage)
        return sm.model.encode_mean(x, mask)

    def _encoder_input(self, chunks: torch.Tensor, stage: int
                       ) -> tuple[StageModel, torch.Tensor, torch.Tensor]:
        """The stage's model, the normalised chunks and the (B, 128) mask."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        sm = self.stage1 if stage == 1 else self.stage2
        H = sm.config.chunk_size
        if chunks.ndim != 3 or chunks.shape[1] != H or chunks.shape[2] != UNIFIED_DIM:
            raise ValueError(f"stage-{stage} encoder expects chunks (B, {H}, {UNIFIED_DIM}) "
                             f"(chunk_size {H}, unified space), got {tuple(chunks.shape)}")
        x = sm.norm.normalize(chunks.to(self.device, torch.float32))
        return sm, x, self._mask_t.expand(x.shape[0], -1)

    @torch.no_grad()
    def ood_score(self, chunks: torch.Tensor) -> torch.Tensor:
        """(B,): squared Mahalanobis distance of mu to the adaptation distribution / Z."""
        mu, _ = self.encode(chunks, stage=2)
        return self._adapt.mahalanobis_sq(mu) / self.latent_dim

    @torch.no_grad()
    def reconstruct(self, chunks: torch.Tensor, stage: int = 2) -> torch.Tensor:
        """Decode the posterior mean back to joint units (B, H, 128) (diagnostics)."""
        mu, _ = self.encode(chunks, stage)
        sm = self.stage1 if stage == 1 else self.stage2
        out = sm.model.decode(mu, self._mask_t.expand(mu.shape[0], -1))
        return sm.norm.unnormalize(out)


def load_alignment(path: str | Path, device: str | torch.device = "cpu") -> AlignmentBundle:
    """Load an ``ate-ros align --out`` folder; shapes and config are checked on the way."""
    folder = Path(path)
    device = torch.device(device)
    stage1, prior, cfg = load_stage1(folder, device)
    if not (folder / STAGE2_FILE).is_file() or not cfg.get("stage2"):
        raise CheckpointError(f"{folder} holds only stage 1 (no {STAGE2_FILE}); run "
                              "`ate-ros align --stage1 ... --adapt ...` to train stage 2")
    vae2, mode2 = _stage_entry(SavedConfig(folder / CONFIG_FILE, cfg), "stage2")
    stage2 = StageModel.load(folder / STAGE2_FILE, vae2, mode2, device)
    tensors = load_tensors(folder / PRIOR_FILE, device)
    try:
        adapt = GaussianLatent.from_tensors(tensors, ADAPT_KEY)
    except ValueError as exc:
        raise CheckpointError(f"{folder / PRIOR_FILE}: {exc}") from exc
    try:
        ada = Embodiment.from_dict(cfg["embodiment_ada"])
        pre = [Embodiment.from_dict(e) for e in cfg.get("embodiment_pre", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: invalid embodiments ({exc})") from exc
    mask = cfg.get("mask", [])
    if (not isinstance(mask, list) or not all(isinstance(m, int) for m in mask)
            or sorted(mask) != ada.slots.tolist()):
        raise CheckpointError(f"{folder / CONFIG_FILE}: mask {cfg.get('mask')} does not match "
                              f"embodiment_ada slots {ada.slots.tolist()}")
    return AlignmentBundle(stage1, stage2, prior, adapt, ada, pre, cfg, device)
