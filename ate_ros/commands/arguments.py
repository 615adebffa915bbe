"""Argument types and the dataclass -> argparse options helper shared by the subcommands.

:func:`add_dataclass_options` declares one option per field of a config dataclass: the flag is
the field name with dashes (``batch_size`` -> ``--batch-size``) unless the field's metadata
names one (``"flag"``), the help text is the metadata's ``"help"``, the default is the field's
(or the caller's override: two commands may start from different defaults), a field without a
default is required, and ``"cli": False`` keeps a field off the command line. Types come from
the annotation: ``int``, ``float``, ``str``, ``list[str]`` (comma-separated), ``X | None``; a
``bool`` that defaults to False is a ``--flag`` switch, one that defaults to True a ``--no-flag``
switch (help from ``"help_off"``). :func:`dataclass_kwargs` reads the parsed values back as
constructor arguments, so the mapping is written once, in the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (argparse ``type=`` for comma-separated lists)."""
    return [v for v in (s.strip() for s in value.split(",")) if v]


def _cli_fields(cls: type, skip: Iterable[str]) -> list[dataclasses.Field]:
    skip = set(skip)
    return [f for f in dataclasses.fields(cls)
            if f.name not in skip and f.metadata.get("cli", True) and f.init]


def _base_type(annotation: Any) -> Any:
    """``X | None`` / ``Optional[X]`` -> ``X``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def _negated(f: dataclasses.Field, base: Any, default: Any) -> bool:
    return base is bool and default is True


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, *,
                          skip: Iterable[str] = (), defaults: dict[str, Any] | None = None
                          ) -> None:
    """Add one option per field of the dataclass ``cls`` (see the module docstring).

    Args:
        parser: The (sub)command's parser.
        cls: The config dataclass.
        skip: Fields the command sets itself.
        defaults: Defaults that replace the dataclass's for this command.
    """
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    for f in _cli_fields(cls, skip):
        base = _base_type(hints[f.name])
        default = defaults.get(f.name, _default(f))
        kw: dict[str, Any] = {}
        if f.metadata.get("help") is not None:
            kw["help"] = f.metadata["help"]
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if base is bool:
            if _negated(f, base, default):
                if f.metadata.get("help_off") is not None:
                    kw["help"] = f.metadata["help_off"]
                else:
                    kw.pop("help", None)
                parser.add_argument(f.metadata.get("flag", "--no-" + f.name.replace("_", "-")),
                                    action="store_true", **kw)
            else:
                parser.add_argument(_flag(f), action="store_true", **kw)
            continue
        if typing.get_origin(base) is list:
            kw["type"] = csv_list
        elif base in (int, float):
            kw["type"] = base
        if "choices" in f.metadata:
            kw["choices"] = tuple(f.metadata["choices"])
        if default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = default
        parser.add_argument(_flag(f), dest=f.name, **kw)


def dataclass_kwargs(cls: type, args: argparse.Namespace, *, skip: Iterable[str] = ()
                     ) -> dict[str, Any]:
    """The constructor arguments of ``cls`` that :func:`add_dataclass_options` declared, read
    from the parsed ``args`` (a ``--no-flag`` switch gives ``flag=False``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in _cli_fields(cls, skip):
        base = _base_type(hints[f.name])
        if base is bool and _default(f) is True:
            dest = f.metadata.get("flag", "--no-" + f.name.replace("_", "-"))
            out[f.name] = not getattr(args, dest.lstrip("-").replace("-", "_"))
        else:
            out[f.name] = getattr(args, f.name)
    return out


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
