"""Training files: atomic JSON and safetensors writes, checked loads, atomic output folders.

Checkpoints are safetensors only (never pickles); every write goes to a temporary name first and is
renamed into place, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAFETENSORS_SUFFIX = ".safetensors"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, not safetensors/JSON, or does not match its config."""


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | Path, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would (0644/0755 under umask 022).

    ``tempfile.mkdtemp`` makes 0700 folders and safetensors writes 0600 files whatever the
    umask; a ROS node running as another user must still be able to read a trained policy.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())

def write_json(path: str | Path, data: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write (contiguous CPU copies; shared storage is duplicated)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"checkpoints are safetensors files; got {path}")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()},
              str(tmp), metadata=metadata)
    follow_umask(tmp)
    os.replace(tmp, path)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; anything else (pickles, .pt) is refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"refusing to load {path}: only {SAFETENSORS_SUFFIX} is accepted "
                              "(no pickles)")
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint: {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc


def load_state_dict_checked(module: torch.nn.Module, tensors: dict[str, torch.Tensor],
                            source: str) -> None:
    """Strict ``load_state_dict`` with an error listing missing/unexpected/bad-shape keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not match the model built from its config: "
            f"missing={missing[:5]} unexpected={unexpected[:5]} shape mismatches={shapes[:5]}")
    module.load_state_dict(tensors, strict=True)


@contextlib.contextmanager
def atomic_output_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder next to ``final``; on success it replaces ``final``, else is removed.

    Nothing half-written ever appears at ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass overwrite=True (or --overwrite)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    follow_umask(tmp, folder=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
