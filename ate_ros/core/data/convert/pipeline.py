"""The conversion pipeline: one bag from reading to its episode files, then many bags into a
dataset folder written atomically (staged next to ``out_dir``, renamed when complete)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ate_ros.core.data.bags import (
    METADATA_EMBODIMENT,
    BagError,
    BagSource,
    bag_storage,
    discover_bags,
)
from ate_ros.core.data.convert import engines
from ate_ros.core.data.convert.alignment import align
from ate_ros.core.data.convert.decoding import decode_frames
from ate_ros.core.data.convert.spec import (
    ROLE_IGNORED,
    STAGE_DIR,
    STATUS_FAILED,
    STATUS_OK,
    ConversionError,
    ConversionSpec,
    Manifest,
)
from ate_ros.core.data.convert.streams import BagStreams
from ate_ros.core.data.convert.writing import (
    account,
    account_failed,
    sha256_file,
    write_episodes,
)
from ate_ros.core.data.episode_format import EMBODIMENT_FILE, MANIFEST, SPLITS
from ate_ros.core.embodiment import Embodiment, load_embodiment

logger = logging.getLogger(__name__)

DECODE_ATTEMPTS = 3
"""Decode failures drop frames and the bag is aligned again; this many rounds at most."""


class _BagConverter:
    """Reads one bag, aligns its streams and writes its episodes into a staging folder."""

    def __init__(self, path: Path, name: str, emb: Embodiment, spec: ConversionSpec,
                 stage: Path) -> None:
        self.path, self.name, self.emb, self.spec, self.stage = path, name, emb, spec, stage
        self.warnings: list[str] = []
        self.report: dict[str, Any] = {
            "path": str(path), "name": name, "storage": bag_storage(path),
            "status": STATUS_FAILED, "error": "", "warnings": self.warnings, "topics": {},
            "frames": {"candidates": 0, "written": 0, "dropped": {}}, "episodes": [],
            "metadata": {}}
        self.written: list[Path] = []
        self.streams: BagStreams | None = None

    def run(self) -> dict[str, Any]:
        try:
            with BagSource(self.path, self.spec.ros_distro, self.spec.msg_dirs) as bag:
                self._convert(bag)
            self.report["status"] = STATUS_OK
        except BagError as exc:
            self._fail(exc.reason)
        except Exception as exc:  # keep converting the other bags; the manifest records it
            logger.exception("unexpected error converting %s", self.path)
            self._fail(f"internal error ({type(exc).__name__}: {exc})")
        return self.report

    def _convert(self, bag: BagSource) -> None:
        report = self.report
        report["ros_distro"] = bag.distro
        report["metadata"] = dict(bag.metadata)
        self.warnings.extend(bag.warnings)
        named = bag.metadata.get(METADATA_EMBODIMENT)
        if named and named != self.emb.name:
            self.warnings.append(f"bag metadata names embodiment {named!r}; converted as "
                                 f"{self.emb.name!r}")
        for topic, s in bag.topics.items():
            report["topics"][topic] = {"type": s.msgtype, "role": ROLE_IGNORED,
                                       "count": s.count}
        bs = self.streams = BagStreams(bag, self.emb, self.spec, self.warnings)
        bs.assign_roles()
        self._record_roles()
        report["action_source"] = bs.action_source
        bs.read()
        bs.clean()
        for _ in range(DECODE_ATTEMPTS):
            aligned = align(bs)
            report["frames"]["candidates"] = aligned.candidates
            report["frames"]["dropped"] = aligned.dropped
            if not aligned.episodes:
                break
            frames, n_failed = decode_frames(bs, aligned.episodes)
            if not n_failed:
                break
        else:
            raise BagError(self.path, "images keep failing to decode")
        if not aligned.episodes:
            raise BagError(self.path, "no episode left after time alignment (frames dropped: "
                                      f"{report['frames']['dropped']}); check --rate and the "
                                      "max ages, or the topics")
        episodes = write_episodes(bs, aligned.episodes, frames, self.name, self.stage,
                                  self.written)
        report["episodes"] = episodes
        report["frames"]["written"] = sum(e["frames"] for e in episodes)
        account(bs, report["topics"], episodes)

    def _record_roles(self) -> None:
        for topic, entry in self.report["topics"].items():
            entry["role"] = self.streams.role(topic)

    def _fail(self, reason: str) -> None:
        self.report["status"] = STATUS_FAILED
        self.report["error"] = reason
        self.report["episodes"] = []
        self.report["frames"]["written"] = 0
        for p in self.written:  # no partial output from a failed bag
            p.unlink(missing_ok=True)
        if self.streams is not None:
            self._record_roles()
        account_failed(self.streams, self.report["topics"])
        # Debug only: the failure is the bag's manifest entry, which bag2dataset prints once.
        logger.debug("%s: %s", self.path, reason)


def convert_bag(path: str | Path, name: str, embodiment: Embodiment, spec: ConversionSpec,
                stage_dir: str | Path) -> dict[str, Any]:
    """Convert one bag into episode files under ``stage_dir``; never raises for bag problems.

    Returns:
        The bag's manifest entry (``status`` is ``"ok"`` or ``"failed"`` with ``error``).
    """
    return _BagConverter(Path(path), name, embodiment, spec, Path(stage_dir)).run()


def _failed_call(call: tuple[Any, ...], reason: str) -> dict[str, Any]:
    """The failed report of a :func:`convert_bag` call that never returned (its worker died)."""
    path, name, emb, spec, stage = call
    converter = _BagConverter(Path(path), name, emb, spec, Path(stage))
    converter._fail(reason)
    return converter.report


def _warm_up(spec: ConversionSpec) -> None:
    """What every bag's first conversion in a process does before its own work: import the
    readers and writers and build the typestore (code generation) of the spec's distribution
    (forked workers inherit them)."""
    import h5py  # noqa: F401
    import rosbags.highlevel  # noqa: F401

    from ate_ros.core.data.bags import _cached_typestore
    from ate_ros.core.data.typestores import DEFAULT_DISTRO, TypestoreError

    try:
        _cached_typestore(spec.ros_distro or DEFAULT_DISTRO, tuple(spec.msg_dirs))
    except TypestoreError:  # each bag reports it as its error
        pass


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], Counter()
    for p in paths:
        base = (p.stem if p.suffix in (".bag", ".mcap", ".db3") else p.name) or "bag"
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def assign_splits(names: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Bag name -> ``"train"``/``"val"``; deterministic for a seed, val never empties train.

    With ``val_fraction > 0`` and at least two bags, val gets at least one bag.
    """
    order = sorted(names)
    n_val = int(round(val_fraction * len(order)))
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    else:
        n_val = 0
    rng = np.random.default_rng(seed)
    val = set(rng.choice(order, size=n_val, replace=False).tolist()) if n_val else set()
    return {n: ("val" if n in val else "train") for n in names}


def convert_bags(inputs: Sequence[str | Path], embodiment: str | Path | Embodiment,
                 out_dir: str | Path, spec: ConversionSpec | None = None,
                 now: float | None = None, ray: str | bool | None = None) -> Manifest:
    """Convert bags into a dataset folder (see the module docstring); the core of bag2dataset.

    Args:
        inputs: Bags, folders of bags or glob patterns.
        embodiment: Embodiment, YAML path or name under ``config/embodiments``.
        out_dir: Dataset folder to create (must not exist unless ``spec.overwrite``).
        spec: Conversion settings.
        now: Wall-clock time recorded in the manifest (``None``: not recorded).
        ray: Run the bags as Ray tasks (:mod:`.engines`): ``True`` on a local Ray instance
            (``spec.workers`` CPUs when above 1, else all), a string to join the cluster at
            that address (``"auto"``, ``"ray://host:10001"``). ``None``: this process
            (``spec.workers`` 1) or a local process pool.

    Returns:
        The manifest. Bags that failed are listed with their error; the caller decides whether
        that is fatal (``ate-ros bag2dataset`` exits 1 unless ``--keep-going``).

    Raises:
        ConversionError: No bag converted (nothing is written; ``.manifest`` has the reports),
            or ``out_dir`` exists.
        BagError: An input is not a bag.
    """
    emb = load_embodiment(embodiment)
    spec = spec or ConversionSpec()
    out = Path(out_dir)
    if out.exists() and not spec.overwrite:
        raise ConversionError(f"{out} exists already; choose a new --out or pass --overwrite")
    bags = discover_bags(inputs)
    if not bags:
        raise ConversionError("no bags given")
    rate = float(spec.rate_hz or emb.control_rate_hz)
    manifest = Manifest(embodiment=emb.name, rate_hz=rate, spec=spec.to_dict(), created_unix=now)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    stage = tmp / STAGE_DIR
    stage.mkdir(parents=True)
    try:
        names = _unique_names(bags)
        jobs = list(zip(bags, names, strict=True))
        calls = [(p, n, emb, spec, stage) for p, n in jobs]
        if ray is None or ray is False:
            reports = engines.run_pool(convert_bag, calls, spec.workers,
                                       prepare=lambda: _warm_up(spec))
        else:
            reports = engines.run_ray(
                convert_bag, calls, _failed_call, address=None if ray is True else ray,
                num_cpus=spec.workers if spec.workers > 1 else None)
        manifest.bags = reports
        if not manifest.succeeded:
            errors = "; ".join(f"{b['path']}: {b['error']}" for b in reports)
            raise ConversionError(f"no bag could be converted ({errors})", manifest)
        split_of = assign_splits([b["name"] for b in manifest.succeeded], spec.val_fraction,
                                 spec.seed)
        for split in SPLITS:
            (tmp / split).mkdir()
            manifest.splits[split] = []
        for b in manifest.succeeded:
            split = split_of[b["name"]]
            b["split"] = split
            for e in b["episodes"]:
                rel = f"{split}/{e['file']}"
                (stage / e["file"]).rename(tmp / rel)
                e["file"] = rel
                e["split"] = split
                manifest.files[rel] = e.pop("sha256")
                manifest.splits[split].append(rel)
        shutil.rmtree(stage)
        emb.to_yaml(tmp / EMBODIMENT_FILE)
        manifest.files[EMBODIMENT_FILE] = sha256_file(tmp / EMBODIMENT_FILE)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2, default=str))
        if out.exists():  # overwrite: swap in the new dataset, then delete the old one
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_ep = len(manifest.episodes)
    logger.info("%s: %d episodes from %d/%d bags (%d failed)", out, n_ep,
                len(manifest.succeeded), len(manifest.bags), len(manifest.failed))
    return manifest
