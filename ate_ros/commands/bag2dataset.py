"""``ate-ros bag2dataset``: rosbags -> ATE alignment data + training episodes.

Exit codes: 0 when every bag converted; 1 when any bag failed (the others are still converted
and written, failed bags are listed in manifest.json with their error and message counts),
unless ``--keep-going`` is given and at least one bag succeeded, which returns 0. By design
``--keep-going`` never turns "nothing converted" into success. A bag fails when it cannot be
opened or read (empty, truncated, a CRC mismatch in an MCAP chunk, not CDR-serialised), lacks
a required topic, or leaves no episode; topics nothing reads are ignored (with a warning when
their type cannot be decoded, e.g. service events). 2 for bad arguments (unknown
embodiment, output exists, no bags, an input that is not a bag). Errors are one line each on
stderr; a failed bag leaves no file behind.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ate_ros.commands.arguments import add_dataclass_options, dataclass_kwargs

if TYPE_CHECKING:
    from ate_ros.core.data.convert import ConversionSpec, Manifest

EPILOG = (
    "exit status: 0 if all bags converted; 1 if any bag failed (the other bags are still "
    "converted, failures are listed in manifest.json) -- with --keep-going, 0 as long as at "
    "least one bag converted; 2 for bad arguments (unknown embodiment, output exists, an "
    "input that is not a bag). A bag fails when it cannot be opened or read (empty, "
    "truncated, MCAP chunk CRC mismatch, not CDR), lacks a required topic or leaves no "
    "episode; unused topics whose types cannot be decoded (e.g. service events) only warn. "
    "Actions: --action-source auto uses JointTrajectory commands, else ActionChunk, else the "
    "next joint state (action[t] = qpos[t+1]).")


RAY_LOCAL = "local"
"""``--ray`` without an address: a local Ray instance for the run."""


def ray_target(args: argparse.Namespace) -> str | bool | None:
    """``convert_bags``' ``ray`` argument: None (local pool), True (local Ray) or an address.

    ``--ray`` takes an optional value, so ``--ray bags/ ...`` would read the first bag as the
    address: a value that is an existing path is given back to the bags.
    """
    import os

    if args.ray is None:
        return None
    if args.ray != RAY_LOCAL and os.path.exists(args.ray):
        args.bags.insert(0, args.ray)
        args.ray = RAY_LOCAL
    return True if args.ray == RAY_LOCAL else args.ray


@dataclass(kw_only=True)
class Bag2DatasetOptions:
    """The options of ``ate-ros bag2dataset`` besides the :class:`ConversionSpec` fields."""

    bags: list[str] = field(metadata={
        "positional": True, "nargs": "+",
        "help": "bag files/folders, folders of bags, or globs"})
    embodiment: str = field(metadata={"help": "embodiment YAML or name"})
    out: str = field(metadata={"help": "dataset folder to create"})
    ray: str | None = field(default=None, metadata={
        "nargs": "?", "const": RAY_LOCAL, "metavar": "ADDRESS",
        "help": "convert each bag as a Ray task: on a local Ray instance without ADDRESS, else "
                "on the cluster at ADDRESS ('auto', 'ray://HOST:10001'); bags and --out must be "
                "at the same paths on every node (docs/ray.md); needs the ray extra. Write it "
                "after the bags or as --ray=ADDRESS"})
    format: str = field(default="ate", metadata={
        "choices": ("ate", "lerobot"),
        "help": "ate: our HDF5 episodes; lerobot: a LeRobotDataset (v3) written by LeRobot's own "
                "writer from the same aligned streams (docs/lerobot.md)"})
    lerobot_videos: bool = field(default=False, metadata={
        "help": "--format lerobot: store cameras as video (decoding needs torchcodec + FFmpeg) "
                "instead of image frames"})
    keep_going: bool = field(default=False, metadata={
        "help": "exit 0 when at least one bag converted even if others failed"})


SPEC_NOT_ON_CLI = ("image_memory_mb", "clock_jump_tolerance_s")
"""ConversionSpec fields the command leaves at their defaults."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ate_ros.core.data.convert import ConversionSpec

    parser.epilog = EPILOG
    add_dataclass_options(parser, Bag2DatasetOptions)
    add_dataclass_options(parser, ConversionSpec, skip=SPEC_NOT_ON_CLI)


def spec_from_args(args: argparse.Namespace) -> ConversionSpec:
    """The :class:`ConversionSpec` of the command line (ValueError for invalid values)."""
    from ate_ros.core.data.convert import ConversionSpec

    return ConversionSpec(**dataclass_kwargs(ConversionSpec, args, skip=SPEC_NOT_ON_CLI))


def print_report(manifest: Manifest, out: str, keep_going: bool) -> int:
    """One line per bag (warnings below it), a summary line; returns the exit status."""
    for b in manifest.bags:
        if b["status"] == "ok":
            eps = len(b["episodes"])
            f = b["frames"]
            print(f"ok     {b['path']}: {eps} episode(s), {f['written']}/{f['candidates']} "
                  f"frames, dropped {f['dropped'] or 'none'}")
            for w in b["warnings"]:
                print(f"       warning: {w}")
        else:
            print(f"FAILED {b['path']}: {b['error']}", file=sys.stderr)
    print(f"{out}: {len(manifest.episodes)} episodes "
          f"(train {len(manifest.splits['train'])}, val {len(manifest.splits['val'])})")
    return 1 if manifest.failed and not keep_going else 0


def run(args: argparse.Namespace) -> int:
    import time

    from ate_ros.core.data.bags import BagError
    from ate_ros.core.data.convert import ConversionError, convert_bags
    from ate_ros.core.embodiment import EmbodimentError, load_embodiment

    try:
        emb = load_embodiment(args.embodiment)
        spec = spec_from_args(args)
    except (EmbodimentError, ValueError, argparse.ArgumentTypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = _ate_target(args)
    ray = ray_target(args)
    if ray is not None:
        from ate_ros.core.data.convert.engines import require_ray

        try:
            require_ray()
        except ImportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        manifest = convert_bags(args.bags, emb, target, spec, now=time.time(), ray=ray)
    except ConversionError as exc:
        if exc.manifest is None:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for b in exc.manifest.bags:
            print(f"FAILED {b['path']}: {b['error']}", file=sys.stderr)
        print("error: no bag converted; nothing written", file=sys.stderr)
        return 1
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "lerobot" and (rc := _export_lerobot(args, target)):
        return rc
    return print_report(manifest, args.out, args.keep_going)


# ----- --format lerobot: convert to our format in a hidden sibling, then export ---------------
def _ate_target(args: argparse.Namespace) -> str:
    """Where convert_bags writes: ``--out`` itself, or a hidden sibling for ``--format lerobot``
    (so per-bag isolation, atomic output and the manifest stay the converter's)."""
    if args.format != "lerobot":
        return args.out
    import shutil
    from pathlib import Path

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        return args.out  # the converter refuses it with its usual message
    tmp = out.with_name(f".{out.name}.ate")
    if tmp.exists():
        shutil.rmtree(tmp)
    return str(tmp)


def _export_lerobot(args: argparse.Namespace, target: str) -> int:
    """Export the converted episodes at ``target`` to ``--out`` as a LeRobotDataset (with the
    converter's manifest in its ``meta/``), then remove ``target``."""
    import shutil
    from pathlib import Path

    from ate_ros.core.data.episode_format import MANIFEST
    from ate_ros.core.data.lerobot_export import export_lerobot
    from ate_ros.core.lerobot_compat import LeRobotUnavailable

    try:
        out = export_lerobot(target, args.out, use_videos=args.lerobot_videos,
                             overwrite=args.overwrite)
        shutil.copy2(Path(target) / MANIFEST, out / "meta" / MANIFEST)
    except (LeRobotUnavailable, ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return 0
