"""``ate-ros sim-record``: scripted-expert demonstrations in MuJoCo, saved as rosbags.

Each episode becomes one rosbag2 (MCAP by default) with ``/joint_states``, ``/front/image_raw``,
``/arm_controller/joint_trajectory`` and ``/instruction``: the topics a real robot records, so
``ate-ros bag2dataset`` converts them like any robot data. ``--direct`` writes episode files
instead (no bags), for quick experiments.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from ate_ros.commands.arguments import SimTaskOptions, add_dataclass_options


@dataclass(kw_only=True)
class SimRecordOptions:
    """The options of ``ate-ros sim-record`` besides the arm and task."""

    episodes: int = field(default=10, metadata={"help": "episodes to write"})
    out: str = field(metadata={"help": "output folder"})
    storage: str = field(default="mcap", metadata={
        "help": "bag storage format", "choices": ("mcap", "sqlite3", "ros1")})
    seed: int = field(default=0, metadata={"help": "run seed (initial states, noise)"})
    state_rate: float = field(default=50.0, metadata={"help": "/joint_states rate in Hz"})
    keep_failures: bool = field(default=False, metadata={
        "help": "also write episodes the expert failed (success=false metadata)"})
    direct: bool = field(default=False, metadata={
        "help": "write an episode-format dataset (train/ val/) instead of bags"})
    val_fraction: float = field(default=0.1, metadata={
        "help": "with --direct: share of episodes written to val/"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, SimTaskOptions)
    add_dataclass_options(parser, SimRecordOptions)


def run(args: argparse.Namespace) -> int:
    from ate_ros.commands.arguments import error
    from ate_ros.core.sim.env import check_sim_inputs
    from ate_ros.core.sim.recording import record_bags, record_dataset

    # Everything is checked before the first file: a bad argument leaves no --out behind.
    if args.episodes < 1:
        return error("sim-record", f"--episodes must be >= 1, got {args.episodes}")
    if args.direct and not 0 <= args.val_fraction < 1:
        return error("sim-record", f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    try:
        check_sim_inputs(args.embodiment, args.task)
    except (ValueError, FileNotFoundError) as exc:  # EmbodimentError, ArmSpecError
        return error("sim-record", exc)
    if args.direct:
        summary = record_dataset(args.embodiment, args.task, args.episodes, args.out,
                                 seed=args.seed, val_fraction=args.val_fraction,
                                 only_success=not args.keep_failures)
    else:
        summary = record_bags(args.embodiment, args.task, args.episodes, args.out,
                              seed=args.seed, storage=args.storage,
                              only_success=not args.keep_failures,
                              state_rate_hz=args.state_rate)
    d = summary.as_dict()
    d.pop("paths")
    d.pop("seeds")
    d.pop("lengths")
    print(json.dumps(d))
    print(f"wrote {summary.written} episodes to {args.out}; the expert failed {summary.failed} "
          f"of {summary.attempts} attempts")
    return 0 if summary.written == args.episodes else 1
