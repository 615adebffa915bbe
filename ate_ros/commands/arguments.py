"""Argument types shared by the ``ate-ros`` subcommands."""

from __future__ import annotations


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (argparse ``type=`` for comma-separated lists)."""
    return [v for v in (s.strip() for s in value.split(",")) if v]


def add_overwrite_argument(parser) -> None:
    """``--overwrite`` of the training commands (see ``core/training/output_guard.py``)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what --out holds and discard the checkpoints of an "
                             "interrupted run (without it, such an --out is refused)")


def error(command: str, exc: BaseException | str) -> int:
    """Print ``ate-ros <command>: error: <message>`` as one line on stderr; returns 2."""
    import sys

    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"ate-ros {command}: error: {text}", file=sys.stderr)
    return 2


def resume_command(args) -> str:
    """The command line that carries on after an interruption: this one with ``--resume``."""
    import shlex

    argv = [a for a in getattr(args, "_argv", None) or [] if a != "--overwrite"]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["ate-ros", *argv])


def interrupted(command: str, args, saved) -> int:
    """The interrupted message: where the checkpoints are and the command that resumes."""
    import sys
    from pathlib import Path

    if Path(saved).is_dir():
        print(f"ate-ros {command}: interrupted; checkpoints are in {saved}: to carry on, run "
              f"{resume_command(args)}", file=sys.stderr)
    else:
        print(f"ate-ros {command}: interrupted before the first checkpoint; nothing was "
              "written", file=sys.stderr)
    return 130
