"""Training files: atomic JSON and safetensors writes, checked loads, atomic output folders.

Checkpoints are safetensors only (never pickles); every write goes to a temporary name first and is
renamed into place, so an interrupted run never leaves a half-written file behind. The module
imports no torch: :class:`SavedConfig` (a saved folder's ``config.json``) is read by the graph
before any model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is imported by the tensor functions' callers, not by this module
    import torch

T = TypeVar("T")

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


@dataclass(frozen=True)
class SavedConfig:
    """The ``config.json`` of a saved folder (a policy, an alignment), checked as it is read;
    every error names the file and the field.

    Attributes:
        file: The ``config.json`` read.
        data: Its JSON object.
    """

    file: Path
    data: dict[str, Any]

    @classmethod
    def read(cls, folder: str | Path, what: str, key: str, expected: str,
             version: int | None = None) -> SavedConfig:
        """``folder``'s ``config.json``, which must be a JSON object whose ``key`` is
        ``expected`` (and whose ``format_version``, with ``version``, is not newer).

        Args:
            folder: The saved folder.
            what: What the folder holds, for messages ("an alignment output").
            key: The field that names the format ("format", "type").
            expected: Its value for this format.
            version: The newest ``format_version`` this code reads (None: unversioned).

        Raises:
            CheckpointError: no such folder, no or invalid JSON, another format, newer version.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{what} not found: {folder} is not a folder")
        file = folder / CONFIG_FILE
        data = read_json(file)
        if not isinstance(data, dict):
            raise CheckpointError(f"{file}: not {what} (a JSON {type(data).__name__}, not an "
                                  "object)")
        if data.get(key) != expected:
            raise CheckpointError(f"{file}: not {what} ({key}={data.get(key)!r}, expected "
                                  f"{expected!r})")
        if version is not None:
            found = data.get("format_version", -1)
            if isinstance(found, bool) or not isinstance(found, int):
                raise CheckpointError(f"{file}: format_version must be an integer, got "
                                      f"{found!r}")
            if found > version:
                raise CheckpointError(f"{file}: format_version {found} is newer than this code "
                                      f"({version})")
        return cls(file, data)

    def section(self, name: str) -> dict[str, Any]:
        """The JSON object under ``name`` (:class:`CheckpointError` naming it if absent)."""
        entry = self.data.get(name)
        if not isinstance(entry, dict) or not entry:
            raise CheckpointError(f"{self.file}: no '{name}' section"
                                  + ("" if entry is None else f" (got {entry!r})"))
        return entry

    def integer(self, section: str, name: str, default: int = 0) -> int:
        """``section.name`` as a whole number >= 0 (``default`` where it is absent)."""
        value = self.section(section).get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{self.file}: {section}.{name} must be a whole number >= 0, "
                                  f"got {value!r}")
        return value

    def build(self, section: str, from_dict: Callable[[dict[str, Any]], T]) -> T:
        """``from_dict`` of a section (a config dataclass), its errors prefixed by the file and
        the section."""
        try:
            return from_dict(self.section(section))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{self.file}: invalid '{section}' section ({exc})") from exc


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
    publish(tmp, final)


def publish(work: Path, out: Path) -> None:
    """Rename the finished ``work`` folder to ``out``, replacing what is there at once."""
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)
