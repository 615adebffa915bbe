"""Pre-train the policy's image encoder to locate objects, before any action training.

Real VLAs start from a vision backbone that already sees objects; our compact policy's CNN starts
from random weights, and behaviour cloning on a few hundred smooth demonstrations never teaches it
to see (the joint state predicts most of a chunk, so the image's gradient stays weak: the copycat
problem). This step trains the same :class:`ImageEncoder` with a small regression head on
labelled frames (``ate_ros.core.sim.object_labels``: where each coloured object and the fingertip
are), so its keypoint tokens carry object positions. ``ate-ros pretrain --vision-init DIR`` then
starts the policy's encoder from these weights.

Saved as ``vision_encoder.safetensors`` (encoder weights, ``image_encoder.`` prefix as inside the
policy) and ``vision_encoder.json`` (the encoder's architecture and the run's metrics); loading
refuses an encoder whose architecture differs from the policy's.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ate_ros.core.steer.policies.image_encoder import ImageEncoder, frames_to_input

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "vision_encoder.safetensors"
META_FILE = "vision_encoder.json"
PREFIX = "image_encoder."


@dataclass
class VisionEncoderSpec:
    """The encoder architecture (must equal the policy's to load into it)."""

    vision_channels: list[int]
    d_model: int
    vision_grid: int
    vision_pool: str
    image_size: int

    @classmethod
    def from_policy_config(cls, cfg) -> VisionEncoderSpec:
        return cls(list(cfg.vision_channels), int(cfg.d_model), int(cfg.vision_grid),
                   str(cfg.vision_pool), int(cfg.image_size))

    def build(self) -> ImageEncoder:
        return ImageEncoder(self.vision_channels, self.d_model, self.vision_grid,
                            self.vision_pool)


class LocalizationHead(nn.Module):
    """(N, K, d) image tokens -> (N, L) labels: a two-layer MLP over all tokens."""

    def __init__(self, tokens: int, d_model: int, label_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(1), nn.Linear(tokens * d_model, hidden), nn.SiLU(),
                                 nn.Linear(hidden, label_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


def _to_input(images: np.ndarray, size: int) -> torch.Tensor:
    return frames_to_input(torch.from_numpy(images), size)  # exactly as the policy sees them


def pretrain_image_encoder(spec: VisionEncoderSpec, images: np.ndarray, labels: np.ndarray,
                           weights: np.ndarray, steps: int = 3000, batch_size: int = 64,
                           lr: float = 1e-3, val_fraction: float = 0.1, seed: int = 0,
                           log_every: int = 250) -> tuple[ImageEncoder, dict]:
    """Train an encoder (+ a head that is thrown away) to regress ``labels`` from ``images``.

    Args:
        spec: Encoder architecture.
        images: (N, H, W, 3) uint8 frames.
        labels: (N, L) targets; standardised per column inside.
        weights: (N, L) per-entry loss weights (0 where a label is undefined, e.g. the position
            of an object that is not in the scene).
        steps, batch_size, lr, seed: Optimisation settings (AdamW, cosine decay).
        val_fraction: Held-out share of the frames for the reported metrics.
        log_every: Steps between progress log lines.

    Returns:
        The trained encoder and metrics: held-out RMSE per label column in label units
        (``val_rmse``), the mean over weighted position columns (``val_pos_rmse``), and the
        same for a predictor that always outputs the training mean (``baseline_pos_rmse``).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if labels.shape != weights.shape or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels {labels.shape}, weights {weights.shape} and images "
                         f"{images.shape} disagree")
    if not np.all(np.isfinite(labels)) or not np.all(np.isfinite(weights)):
        raise ValueError("labels or weights contain NaN/inf")
    n_val = max(1, int(round(len(images) * val_fraction)))
    if len(images) - n_val < batch_size:
        raise ValueError(f"{len(images)} frames are too few for batch size {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    w = torch.from_numpy(weights.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    tr = slice(n_val, None)
    wsum = w[tr].sum(0).clamp_min(1e-6)
    mean = (y[tr] * w[tr]).sum(0) / wsum
    std = (((y[tr] - mean) ** 2 * w[tr]).sum(0) / wsum).sqrt().clamp_min(1e-3)
    yn = (y - mean) / std
    encoder = spec.build()
    with torch.no_grad():
        tokens = encoder(_to_input(images[:1], spec.image_size)).shape[1]
    head = LocalizationHead(tokens, spec.d_model, labels.shape[1])
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    n_train = len(images) - n_val
    encoder.train()
    head.train()
    for step in range(steps):
        idx = n_val + torch.randint(0, n_train, (batch_size,), generator=gen)
        x = _to_input(images[idx.numpy()], spec.image_size)
        pred = head(encoder(x))
        loss = ((pred - yn[idx]) ** 2 * w[idx]).sum() / w[idx].sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            logger.info("vision pretrain step %d/%d loss %.4f", step + 1, steps,
                        float(loss.detach()))
    encoder.eval()
    head.eval()
    with torch.no_grad():
        preds = torch.cat([head(encoder(_to_input(images[i:i + 256], spec.image_size)))
                           for i in range(0, n_val, 256)])[:n_val] * std + mean
    err2 = (preds - y[:n_val]) ** 2
    wv = w[:n_val]
    col_rmse = ((err2 * wv).sum(0) / wv.sum(0).clamp_min(1e-6)).sqrt()
    base_rmse = ((((y[:n_val] - mean) ** 2) * wv).sum(0) / wv.sum(0).clamp_min(1e-6)).sqrt()
    pos_cols = [j for j in range(labels.shape[1]) if not np.all(np.isin(labels[:, j], (0, 1)))]
    metrics = {
        "steps": steps, "frames": int(len(images)), "val_frames": n_val,
        "final_loss": float(loss.detach()),
        "val_rmse": [float(v) for v in col_rmse],
        "val_pos_rmse": float(col_rmse[pos_cols].mean()) if pos_cols else float("nan"),
        "baseline_pos_rmse": float(base_rmse[pos_cols].mean()) if pos_cols else float("nan"),
    }
    return encoder, metrics


def save_vision_encoder(out_dir: str | Path, encoder: ImageEncoder, spec: VisionEncoderSpec,
                        metrics: dict | None = None) -> Path:
    """Write ``vision_encoder.safetensors`` + ``vision_encoder.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {PREFIX + k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    meta = {"spec": asdict(spec), "metrics": metrics or {}}
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(out / META_FILE)
    return out


def load_vision_encoder(path: str | Path, policy) -> dict:
    """Copy a saved encoder into ``policy.image_encoder``; returns the saved metadata.

    Raises:
        FileNotFoundError: ``path`` holds no saved encoder.
        ValueError: The encoder's architecture differs from the policy's.
    """
    p = Path(path)
    if not (p / WEIGHTS_FILE).is_file() or not (p / META_FILE).is_file():
        raise FileNotFoundError(f"{p}: no {WEIGHTS_FILE} + {META_FILE} (run "
                                "`ate-ros pretrain-vision` first)")
    meta = json.loads((p / META_FILE).read_text())
    saved = VisionEncoderSpec(**meta["spec"])
    wanted = VisionEncoderSpec.from_policy_config(policy.config)
    if saved != wanted:
        raise ValueError(f"{p}: vision encoder {asdict(saved)} does not match the policy's "
                         f"{asdict(wanted)}")
    tensors = load_file(str(p / WEIGHTS_FILE))
    state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
    policy.image_encoder.load_state_dict(state, strict=True)
    return meta
