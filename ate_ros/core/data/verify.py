"""Re-read a converted dataset and check it (``ate-ros verify-dataset``).

Errors (the dataset is unusable as is): unreadable files, wrong shapes or dtypes, NaN/inf,
timestamps that do not increase, a median tick rate off the claimed ``rate_hz`` by more than the
tolerance, slots/joint names that disagree with ``embodiment.yaml``, image sizes that differ
from the embodiment's cameras, manifest hashes that do not match, files missing from (or not
listed in) the manifest. Warnings: joint values outside the embodiment limits, gaps in the
timestamps (ticks dropped with ``gap_policy=drop``), no manifest or embodiment file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ate_ros.core.data.episode_format import (
    ACTION,
    EMBODIMENT_FILE,
    EPISODE_SUFFIX,
    IMAGES,
    MANIFEST,
    QPOS,
    SPLITS,
    TIMESTAMPS,
    EpisodeFormatError,
    read_episode,
    validation_plan,
)

logger = logging.getLogger(__name__)

DEFAULT_RATE_TOLERANCE = 0.05


@dataclass
class EpisodeCheck:
    """Findings for one episode file."""

    file: str
    frames: int = 0
    rate_hz: float = 0.0
    measured_rate_hz: float = 0.0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset`; ``ok`` is False when any error was found."""

    path: str
    episodes: list[EpisodeCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not any(e.errors for e in self.episodes)

    @property
    def all_errors(self) -> list[str]:
        return self.errors + [f"{e.file}: {m}" for e in self.episodes for m in e.errors]

    @property
    def all_warnings(self) -> list[str]:
        return self.warnings + [f"{e.file}: {m}" for e in self.episodes for m in e.warnings]

    @property
    def frames(self) -> int:
        return sum(e.frames for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def summary(self) -> str:
        lines = [f"{self.path}: {len(self.episodes)} episodes, {self.frames} frames, "
                 f"{len(self.all_errors)} errors, {len(self.all_warnings)} warnings"]
        lines += [f"  ERROR {m}" for m in self.all_errors]
        lines += [f"  warning {m}" for m in self.all_warnings]
        return "\n".join(lines)


def _check_raw(path: Path, check: EpisodeCheck) -> None:
    """dtype checks on the stored arrays (read_episode casts, so look at the file itself)."""
    import h5py

    with h5py.File(path, "r") as f:  # groups where datasets belong: read_episode says so
        for key, kind in ((QPOS, np.float32), (ACTION, np.float32), (TIMESTAMPS, np.float64)):
            if isinstance(f.get(key), h5py.Dataset) and f[key].dtype != kind:
                check.errors.append(f"{key} has dtype {f[key].dtype}, expected {np.dtype(kind)}")
        if isinstance(f.get(IMAGES), h5py.Group):
            for cam in f[IMAGES]:
                if isinstance(f[IMAGES][cam], h5py.Dataset) and f[IMAGES][cam].dtype != np.uint8:
                    check.errors.append(f"images/{cam} has dtype {f[IMAGES][cam].dtype}")


def _check_episode(path: Path, rel: str, emb, tol: float) -> EpisodeCheck:
    check = EpisodeCheck(file=rel)
    try:
        _check_raw(path, check)
        ep = read_episode(path)  # validates shapes, NaN, strictly increasing timestamps
    except (EpisodeFormatError, OSError) as exc:
        check.errors.append(str(exc))
        return check
    check.frames = len(ep)
    check.rate_hz = ep.rate_hz
    if ep.timestamps is None:
        check.warnings.append("no timestamps; rate not checked")
    elif len(ep) > 1:
        dt = np.diff(ep.timestamps)
        med = float(np.median(dt))
        check.measured_rate_hz = 1.0 / med if med > 0 else 0.0
        if ep.rate_hz > 0:
            if abs(check.measured_rate_hz - ep.rate_hz) > tol * ep.rate_hz:
                check.errors.append(f"measured rate {check.measured_rate_hz:.3f} Hz differs from "
                                    f"claimed {ep.rate_hz:.3f} Hz by more than {tol:.0%}")
            gaps = int(np.sum(dt > 1.5 / ep.rate_hz))
            if gaps:
                check.warnings.append(f"{gaps} gaps in timestamps (largest {dt.max():.3f} s)")
        else:
            check.warnings.append("no rate_hz attribute; rate not checked")
    if emb is not None:
        if ep.qpos.shape[1] != emb.dof:
            check.errors.append(f"qpos has {ep.qpos.shape[1]} columns, embodiment {emb.name!r} "
                                f"has {emb.dof} joints")
            return check
        if ep.slots is not None and not np.array_equal(ep.slots, emb.slots):
            check.errors.append(f"slots {ep.slots.tolist()} != embodiment slots "
                                f"{emb.slots.tolist()}")
        if ep.joint_names and list(ep.joint_names) != list(emb.joint_names):
            check.errors.append(f"joint names {ep.joint_names} != embodiment "
                                f"{emb.joint_names}")
        for key, arr in ((QPOS, ep.qpos), (ACTION, ep.action)):
            if arr is None:
                continue
            inside = emb.within_limits(arr, tol=1e-5)
            if not inside.all():
                check.warnings.append(f"{key}: {int((~inside).sum())} of {len(arr)} frames "
                                      "outside the joint limits")
        for cam in emb.cameras:
            img = ep.images.get(cam.name)
            if img is None:
                check.warnings.append(f"no images/{cam.name}")
            elif img.shape[1:3] != (cam.height, cam.width):
                check.errors.append(f"images/{cam.name} are {img.shape[2]}x{img.shape[1]}, "
                                    f"embodiment says {cam.width}x{cam.height}")
    return check


def _manifest_entries(manifest: Any) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The ``files`` (path -> SHA-256) and ``bags`` of a parsed manifest; ValueError naming the
    field that does not have the structure ``convert_bags`` writes."""
    if not isinstance(manifest, dict):
        raise ValueError(f"expected an object, got {type(manifest).__name__}")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError("'files' must map each episode path to its SHA-256 string")
    bags = manifest.get("bags", [])
    if not isinstance(bags, list) or not all(isinstance(b, dict) for b in bags):
        raise ValueError("'bags' must be a list of objects")
    for i, b in enumerate(bags):
        episodes = b.get("episodes", [])
        if not isinstance(episodes, list) or not all(
                isinstance(e, dict) and isinstance(e.get("file"), str)
                and isinstance(e.get("frames"), int) and not isinstance(e.get("frames"), bool)
                for e in episodes):
            raise ValueError(f"'bags[{i}].episodes' must be a list of {{file: str, frames: int}}")
    return files, bags


def verify_dataset(path: str | Path, rate_tolerance: float = DEFAULT_RATE_TOLERANCE,
                   embodiment=None, check_hashes: bool = True) -> VerifyReport:
    """Check a dataset folder written by ``convert_bags`` (or any episode_format dataset).

    Args:
        path: Dataset folder (``train/``, ``val/``, ``manifest.json``, ``embodiment.yaml``).
        rate_tolerance: Allowed relative difference between median tick rate and ``rate_hz``.
        embodiment: Embodiment to check against; default: the dataset's ``embodiment.yaml``.
        check_hashes: Recompute SHA-256 of every file listed in the manifest.

    Returns:
        A :class:`VerifyReport`; this function does not raise for problems in the data.
    """
    from ate_ros.core.data.convert import sha256_file
    from ate_ros.core.embodiment import EmbodimentError, load_embodiment

    root = Path(path)
    report = VerifyReport(path=str(root))
    if not root.is_dir():
        report.errors.append("not a folder")
        return report
    emb = None
    try:
        if embodiment is not None:
            emb = load_embodiment(embodiment)
        elif (root / EMBODIMENT_FILE).is_file():
            emb = load_embodiment(root / EMBODIMENT_FILE)
        else:
            report.warnings.append(f"no {EMBODIMENT_FILE}; limits and slots not checked")
    except EmbodimentError as exc:
        report.errors.append(str(exc))
    files = sorted(p for s in SPLITS if (root / s).is_dir() for p in (root / s).iterdir()
                   if p.suffix in (EPISODE_SUFFIX, ".h5"))
    if not files:
        report.errors.append("no episode files under train/ or val/")
    if not (root / "train").is_dir():
        report.errors.append("missing train/ folder")
    if (root / "train").is_dir() and files:
        try:
            plan = validation_plan(root)
        except EpisodeFormatError:
            plan = ""  # no train episodes: an error above already
        if plan:
            report.warnings.append(plan)
    for p in files:
        report.episodes.append(_check_episode(p, p.relative_to(root).as_posix(), emb,
                                              rate_tolerance))
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        report.warnings.append(f"no {MANIFEST}; hashes not checked")
        return report
    try:
        manifest = json.loads(manifest_path.read_text())
        listed, bags = _manifest_entries(manifest)
    except (OSError, ValueError) as exc:
        report.errors.append(f"{MANIFEST} unreadable ({exc})")
        return report
    present = {p.relative_to(root).as_posix() for p in files}
    for rel in sorted(present - set(listed)):
        report.errors.append(f"{rel} is not listed in {MANIFEST}")
    for rel, digest in sorted(listed.items()):
        f = root / rel
        if not f.is_file():
            report.errors.append(f"{rel} listed in {MANIFEST} but missing")
        elif check_hashes and sha256_file(f) != digest:
            report.errors.append(f"{rel}: SHA-256 differs from {MANIFEST} (file changed)")
    frames_listed = {e["file"]: e["frames"] for b in bags for e in b.get("episodes", [])}
    for check in report.episodes:
        n = frames_listed.get(check.file)
        if n is not None and n != check.frames and not check.errors:
            check.errors.append(f"{check.frames} frames, manifest says {n}")
    for b in bags:
        if b.get("status") != "ok":
            report.warnings.append(f"bag {b.get('path')} failed conversion: {b.get('error')}")
    return report
