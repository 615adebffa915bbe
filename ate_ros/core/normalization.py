"""Per-dimension normalisation statistics, stored next to the weights (never refit at load time).

Two modes:
- ``"mean_std"``: (x - mean) / std. Default for VAEs and policies: it keeps the relative scale of
  joints that barely move small instead of blowing them up to [-1, 1].
- ``"min_max"``: maps [min, max] to [-1, 1]; what diffusion policies often use for actions.

Dimensions that never vary (or are unused slots of the unified space) get std = 1 / range = 2 so
they pass through unchanged instead of dividing by ~0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

NORM_MODES = ("mean_std", "min_max")
_EPS = 1e-6


@dataclass
class NormStats:
    """Statistics over the last dimension. All arrays have shape (D,), float32."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mode: str = "mean_std"
    _torch: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    """(dtype, device) -> the ``scale, shift`` tensors: callers that normalise on every step
    (guidance encodes twice per fine-tuning step) copy them to the device once."""

    def __post_init__(self) -> None:
        if self.mode not in NORM_MODES:
            raise ValueError(f"normalisation mode must be one of {NORM_MODES}, got {self.mode!r}")
        for name in ("mean", "std", "min", "max"):
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.ndim != 1:
                raise ValueError(f"NormStats.{name} must be 1-D, got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"NormStats.{name} contains NaN or inf")
            setattr(self, name, arr)
        shapes = {a.shape for a in (self.mean, self.std, self.min, self.max)}
        if len(shapes) != 1:
            raise ValueError(f"NormStats arrays differ in shape: {shapes}")

    def __getstate__(self) -> dict:
        # Device tensors stay in their process (a DataLoader worker re-creates its own).
        return {**self.__dict__, "_torch": {}}

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, data: np.ndarray, mode: str = "mean_std", used: np.ndarray | None = None
            ) -> NormStats:
        """Fit on (N, D) data. ``used`` (D,) bool marks dims to fit; the rest pass through."""
        data = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])
        if data.shape[0] == 0:
            raise ValueError("cannot fit normalisation statistics on zero samples")
        if not np.all(np.isfinite(data)):
            raise ValueError("cannot fit normalisation statistics: data contain NaN or inf")
        mean, std = data.mean(0), data.std(0)
        lo, hi = data.min(0), data.max(0)
        flat = std < _EPS
        if used is not None:
            flat |= ~np.asarray(used, dtype=bool)
        std = np.where(flat, 1.0, std)
        # Constant dims: centre them and give a unit range so they map to ~0.
        lo = np.where(flat, mean - 1.0, lo)
        hi = np.where(flat, mean + 1.0, hi)
        if used is not None:
            unused = ~np.asarray(used, dtype=bool)
            mean, lo, hi = np.where(unused, 0.0, mean), np.where(unused, -1.0, lo), np.where(
                unused, 1.0, hi)
        return cls(mean=mean, std=std, min=lo, max=hi, mode=mode)

    # ----- apply ----------------------------------------------------------------------------
    def _scale_shift(self, like):
        if self.mode == "mean_std":
            scale, shift = self.std, self.mean
        else:
            scale, shift = (self.max - self.min) / 2.0, (self.max + self.min) / 2.0
        if isinstance(like, torch.Tensor):
            key = (like.dtype, like.device)
            if key not in self._torch:
                self._torch[key] = (torch.as_tensor(scale, dtype=like.dtype, device=like.device),
                                    torch.as_tensor(shift, dtype=like.dtype, device=like.device))
            return self._torch[key]
        return scale, shift

    def normalize(self, x):
        """Works on numpy arrays and torch tensors (differentiable) with last dim D."""
        scale, shift = self._scale_shift(x)
        return (x - shift) / scale

    def unnormalize(self, x):
        scale, shift = self._scale_shift(x)
        return x * scale + shift

    # ----- (de)serialisation as flat tensors (safetensors-friendly) -------------------------
    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": torch.from_numpy(getattr(self, k).copy())
                for k in ("mean", "std", "min", "max")}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, mode: str) -> NormStats:
        try:
            return cls(**{k: tensors[f"{prefix}.{k}"].cpu().numpy()
                          for k in ("mean", "std", "min", "max")}, mode=mode)
        except KeyError as exc:
            raise ValueError(f"normalisation tensors {prefix}.* missing: {exc}") from exc

    def to_json(self) -> dict:
        return {"mode": self.mode, **{k: getattr(self, k).tolist()
                                      for k in ("mean", "std", "min", "max")}}

    @classmethod
    def from_json(cls, data: dict) -> NormStats:
        return cls(**{k: np.asarray(data[k]) for k in ("mean", "std", "min", "max")},
                   mode=data.get("mode", "mean_std"))
