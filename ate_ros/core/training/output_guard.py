"""What a training command may write to: its ``--out`` is checked before anything is created.

Every training command (``align``, ``pretrain``, ``pretrain-vision``, ``steer``) refuses an
``--out`` that

- is a file (a folder is written there);
- is one of the run's own inputs, or lies inside one, or holds one (a policy fine-tuned into its
  own ``--policy`` folder, an alignment written over its ``--stage1``): refused even with
  ``--overwrite``, since the run reads them;
- holds another run's output (a trained policy, an alignment, anything) unless ``--overwrite``;
- has checkpoints of an interrupted run next to it (``<out>.resume/``) that it was not told to
  ``--resume`` from, unless ``--overwrite`` (which throws them away).

Results are written to a temporary folder and renamed into place, so ``--out`` only ever holds
a complete output (see :func:`~ate_ros.core.training.files.atomic_output_dir` and
:func:`~ate_ros.core.training.files.publish`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from ate_ros.core.config_fields import field_default

__all__ = ["RESUME_SUFFIX", "OutputError", "check_output", "data_fingerprint", "describe",
           "differing_settings", "field_defaults", "resume_dir"]

RESUME_SUFFIX = ".resume"
_HASHED_BYTES = 1 << 20
"""Bytes hashed at each end of a data file for its fingerprint (with its size and name)."""


class OutputError(ValueError):
    """``--out`` names a place this run must not write to."""


def resume_dir(out: str | Path) -> Path:
    """Where the checkpoints of the run writing ``out`` live (``<out>.resume``)."""
    out = Path(out)
    return out.with_name(out.name + RESUME_SUFFIX)


def describe(folder: Path) -> str:
    """What an existing output folder holds, in words for a message."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return "a trained policy"
    if (folder / "stage2.safetensors").is_file() or (folder / "align_config.json").is_file():
        return "an alignment output"
    if (folder / "vision_encoder.safetensors").is_file():
        return "a pre-trained image encoder"
    return "files"


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(out: str | Path, *, inputs: Iterable[str | Path | None] = (),
                 overwrite: bool = False, resume: bool = False,
                 resumable: bool = False, checkpoints: bool | None = None) -> None:
    """Refuse an ``--out`` the run must not write to (see the module notes).

    Args:
        out: The output folder.
        inputs: Paths the run reads (data, policies, VAEs, embodiment files); None is skipped.
        overwrite: ``--overwrite``: replace an existing output, discard stale checkpoints.
        resume: ``--resume``: ``out`` may hold this run's own finished output (the caller
            compares its recorded settings).
        resumable: ``out`` holds a checkpoint the caller can resume from.
        checkpoints: ``<out>.resume/`` holds checkpoints (None: it is there and not empty).

    Raises:
        OutputError: Naming the path and the option that would allow it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; name a folder (nothing was written)")
    here = out.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        path = Path(str(inp).split(":", 1)[1] if str(inp).startswith("lerobot:") else inp)
        if path.exists() and _related(here, path.resolve()):
            raise OutputError(f"--out {out} is this run's input {path} (or holds it, or lies "
                              "inside it); choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not (resume and resumable):
        what = describe(out)
        hint = (" that this run cannot resume from" if resume else "")
        raise OutputError(f"--out {out} already holds {what}{hint}; pass --overwrite to "
                          "replace it, or choose another folder")
    saved = resume_dir(out)
    if checkpoints is None:
        checkpoints = saved.is_dir() and any(saved.iterdir())
    if checkpoints and not resume and not overwrite:
        raise OutputError(f"an interrupted run left checkpoints in {saved}: pass --resume to "
                          "carry on from them, or --overwrite to start over")


def differing_settings(saved: dict, wanted: dict, ignored: Sequence[str] = (),
                       defaults: Mapping[str, Any] | None = None) -> list[str]:
    """``"name: X then, Y now"`` for every setting that differs (``ignored`` skipped).

    A setting ``saved`` lacks was written before that setting existed: the run then behaved as
    its default does, so it stands for ``defaults[name]`` (and differs only from another value).
    """
    defaults = defaults or {}
    keys = sorted((set(saved) | set(wanted)) - set(ignored))
    then = {k: saved[k] if k in saved else defaults.get(k) for k in keys}
    return [f"{k}: {then[k]!r} then, {wanted.get(k)!r} now" for k in keys
            if then[k] != wanted.get(k)]


def field_defaults(config_type: type) -> dict[str, Any]:
    """The default of each field of the dataclass ``config_type`` that has one, as
    :func:`dataclasses.asdict` records a value (the settings :func:`differing_settings`
    compares)."""
    out = {}
    for f in fields(config_type):
        value = field_default(f)
        if value is MISSING:
            continue
        out[f.name] = (asdict(value) if is_dataclass(value) and not isinstance(value, type)
                       else value)
    return out


def data_fingerprint(paths: Iterable[str | Path]) -> str:
    """A hash of the files under ``paths``: names, sizes and the first and last MiB of each.

    Cheap on datasets of many GB, and it changes when an episode is added, removed, renamed,
    re-converted or edited (a resumed run on other data is refused).
    """
    h = hashlib.sha256()
    for root in paths:
        root = Path(str(root))
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else (
            [root] if root.is_file() else [])
        h.update(f"{root.name}\0".encode())
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.relative_to(root) if root.is_dir() else f.name}\0{size}\0".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(_HASHED_BYTES))
                if size > 2 * _HASHED_BYTES:
                    fh.seek(-_HASHED_BYTES, os.SEEK_END)
                    h.update(fh.read(_HASHED_BYTES))
    return h.hexdigest()[:32]
