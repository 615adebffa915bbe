"""``ate-ros sim-record``: scripted-expert demonstrations in MuJoCo, saved as rosbags.

Each episode becomes one rosbag2 (MCAP by default) with ``/joint_states``, ``/front/image_raw``,
``/arm_controller/joint_trajectory`` and ``/instruction``: the topics a real robot records, so
``ate-ros bag2dataset`` converts them like any robot data. ``--direct`` writes episode files
instead (no bags), for quick experiments.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embodiment", required=True,
                        help="simulated arm: sim_arm6, sim_arm5, sim_arm7 or a YAML path")
    parser.add_argument("--task", required=True, help="reach, push or pick_color")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to write")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--storage", choices=("mcap", "sqlite3", "ros1"), default="mcap",
                        help="bag storage format")
    parser.add_argument("--seed", type=int, default=0, help="run seed (initial states, noise)")
    parser.add_argument("--state-rate", type=float, default=50.0,
                        help="/joint_states rate in Hz")
    parser.add_argument("--keep-failures", action="store_true",
                        help="also write episodes the expert failed (success=false metadata)")
    parser.add_argument("--direct", action="store_true",
                        help="write an episode-format dataset (train/ val/) instead of bags")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="with --direct: share of episodes written to val/")


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
