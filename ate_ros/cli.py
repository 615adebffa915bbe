"""The ``ate-ros`` command.

Each subcommand lives in ``ate_ros/commands/<name>.py`` and provides ``add_arguments(parser)``
and ``run(args) -> int``. Their options come from dataclasses (``ate_ros.commands.arguments``),
some of which live beside torch code; :func:`main` therefore declares only the options of the
command it runs, and ``ate-ros --help`` imports no command module. Command modules import heavy
libraries (torch, mujoco, rclpy) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from typing import NoReturn

# (subcommand, module, one-line help), in pipeline order.
COMMANDS: list[tuple[str, str, str]] = [
    ("sim-record", "ate_ros.commands.sim_record",
     "record scripted-expert demonstrations in MuJoCo as MCAP rosbags"),
    ("bag2dataset", "ate_ros.commands.bag2dataset",
     "convert rosbags (ROS 1, ROS 2 sqlite3/MCAP) into ATE alignment + training episodes"),
    ("verify-dataset", "ate_ros.commands.verify_dataset",
     "re-read a converted dataset and check shapes, rates, limits and hashes"),
    ("align", "ate_ros.commands.align",
     "train the two-stage alignment VAEs (pre-training prior, reverse-KL adaptation)"),
    ("pretrain-vision", "ate_ros.commands.pretrain_vision",
     "pre-train the policy's image encoder to locate objects in simulated scenes"),
    ("pretrain", "ate_ros.commands.pretrain",
     "train the compact VLA policy on pre-training embodiments"),
    ("steer", "ate_ros.commands.steer",
     "fine-tune a policy on adaptation data with ATE latent guidance (or without)"),
    ("eval", "ate_ros.commands.eval",
     "closed-loop evaluation of a policy in the MuJoCo simulation"),
    ("plot-chunks", "ate_ros.commands.plot_chunks",
     "render predicted/recorded chunks (end-effector paths) to PNG, no RViz needed"),
    ("run", "ate_ros.commands.run",
     "run the ROS 2 graph (perception, policy, executor[, sim robot]) in one process"),
    ("demo", "ate_ros.commands.demo",
     "the whole pipeline on the simulation: record, convert, align, pretrain, steer, eval, ROS"),
]


def available_commands() -> list[tuple[str, str, str]]:
    """The subcommands whose module is present in this installation."""
    return [c for c in COMMANDS if importlib.util.find_spec(c[1]) is not None]


class OneLineErrorParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line on stderr, as every other error of the
    commands is (``ate-ros run: error: argument --seed: invalid int value: 'x'``), exit 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        print(f"{self.prog}: error: {text} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with ``only`` set, of that one (the others listed
    without their options; ``only=""``: none)."""
    parser = OneLineErrorParser(
        prog="ate-ros",
        description="Align-Then-stEer (ATE) for ROS 2: adapt diffusion/flow VLA policies to new "
                    "robots with few demonstrations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=OneLineErrorParser)
    for name, module_name, help_text in available_commands():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def _command_in(argv: list[str]) -> str:
    """The subcommand ``argv`` names: its first word that is not an option ("" when none; the
    only option before it, ``-v``, takes no value)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    args._argv = argv  # for the resume hint
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
