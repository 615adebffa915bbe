"""Argument types and the dataclass -> argparse options helper shared by the subcommands.

Every option of ``ate-ros`` is declared once, as a dataclass field: a config field (``VLAConfig``,
``ConversionSpec``, ``TrainConfig``, ...) or, for what only a command knows (paths, switches), a
field of the command's small ``*Options`` dataclass. :func:`add_dataclass_options` declares one
option per field and :func:`dataclass_kwargs` reads the parsed values back as constructor
arguments, so the mapping is written once, in the dataclass.

The flag is the field name with dashes (``batch_size`` -> ``--batch-size``) unless the field's
metadata names one (``"flag"``; a list gives aliases, ``["-o", "--out"]``), the help text is the
metadata's ``"help"`` (``"min"``/``"max"`` are shown after it and checked), ``"choices"`` and
``"metavar"`` pass through, the default is the field's (or the caller's override: two commands may
start from different defaults), a field without a default is required, and ``"cli": False`` keeps
a field off the command line; fields holding a nested dataclass are left to their own call.
Types come from the annotation: ``int``, ``float``, ``str``, ``list[str]`` (comma-separated, or
repeated with ``"action": "append"``), ``dict[str, str]`` (repeated ``KEY=VALUE``), ``X | None``
(with ``None`` among the choices, the command line spells it ``none``). A ``bool`` that defaults
to False is a ``--flag`` switch, one that defaults to True a ``--no-flag`` switch (help from
``"help_off"``), one that defaults to None a ``--flag/--no-flag`` pair. ``"positional": True``
makes a positional argument; ``"nargs"`` and ``"const"`` pass through.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ate_ros.core.config_fields import (
    FieldInfo,
    bound_text,
    check_value,
    field_info,
    unwrap_optional,
)
from ate_ros.core.config_fields import field_default as _field_default

NONE_WORD = "none"
"""How the command line spells ``None`` for an optional field whose choices include it."""


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (argparse ``type=`` for comma-separated lists)."""
    return [v for v in (s.strip() for s in value.split(",")) if v]


def _cli_fields(cls: type, only: Iterable[str] | None, skip: Iterable[str]
                ) -> list[dataclasses.Field]:
    """The fields of ``cls`` on the command line; a field that a subclass declares again (with
    another default) and without metadata keeps its base class's."""
    skip = set(skip)
    fields = [_inherit_metadata(cls, f) for f in dataclasses.fields(cls)]
    if only is not None:
        only = set(only)
        unknown = only - {f.name for f in fields}
        if unknown:
            raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return [f for f in fields
            if f.name not in skip and (only is None or f.name in only) and f.init
            and f.metadata.get("cli", True) and not _is_dataclass_field(f)]


def _inherit_metadata(cls: type, f: dataclasses.Field) -> dataclasses.Field:
    if f.metadata:
        return f
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            found = {b.name: b for b in dataclasses.fields(base)}.get(f.name)
            if found is not None and found.metadata:
                g = dataclasses.field(default=f.default, default_factory=f.default_factory,
                                      metadata=found.metadata)
                g.name, g.type = f.name, f.type
                return g
    return f


def _is_dataclass_field(f: dataclasses.Field) -> bool:
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(
        f.default_factory())


def _base_type(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    return unwrap_optional(annotation)[0]


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of ``cls`` (``dataclasses.MISSING`` when it has none)."""
    return _field_default(next(f for f in dataclasses.fields(cls) if f.name == name))


def _flags(f: dataclasses.Field, negated: bool) -> list[str]:
    flag = f.metadata.get("flag")
    if flag is None:
        return [("--no-" if negated else "--") + f.name.replace("_", "-")]
    return [flag] if isinstance(flag, str) else list(flag)


def _negated_dest(f: dataclasses.Field) -> str:
    return _flags(f, True)[-1].lstrip("-").replace("-", "_")


def _ranged(info: FieldInfo) -> Callable[[str], Any]:
    """``type=`` that parses the field's type and refuses values outside its bounds (the
    config's own check, :func:`check_value`, so the command line and the config agree)."""
    def parse(text: str) -> Any:
        value = info.type(text)
        try:
            check_value(info, value, name="value")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = info.type.__name__  # argparse names the type in its messages
    return parse


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, *,
                          only: Iterable[str] | None = None, skip: Iterable[str] = (),
                          defaults: dict[str, Any] | None = None,
                          required: Iterable[str] = (), note: str = "") -> None:
    """Add one option per field of the dataclass ``cls`` (see the module docstring).

    Args:
        parser: The (sub)command's parser.
        cls: The dataclass that declares the options.
        only: The fields to declare (default: all of them).
        skip: Fields the command sets itself.
        defaults: Defaults that replace the dataclass's for this command.
        required: Fields the command needs although the dataclass has a default.
        note: Appended to every help text of this call (``"both stages"``).
    """
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    required = set(required)
    for f in _cli_fields(cls, only, skip):
        meta = f.metadata
        tp, optional = unwrap_optional(hints[f.name])
        info = field_info(cls, f, type_=tp, optional=optional)
        base = info.type
        default = defaults.get(f.name, info.default)
        help_text = meta.get("help")
        kw: dict[str, Any] = {k: meta[k] for k in ("metavar", "nargs", "const") if k in meta}
        negated = base is bool and default is True
        if negated:
            help_text = meta.get("help_off")
        elif help_text is not None and info.has_bounds:
            help_text += f"; {bound_text(info)}"
        if help_text is not None:
            kw["help"] = f"{help_text} ({note})" if note else help_text
        flags = _flags(f, negated)
        if meta.get("positional"):
            parser.add_argument(f.name, **kw)
            continue
        if base is bool:
            if default is None:
                kw.update(action=argparse.BooleanOptionalAction, default=None, dest=f.name)
            else:
                kw.update(action="store_true", dest=_negated_dest(f) if negated else f.name)
            parser.add_argument(*flags, **kw)
            continue
        origin = typing.get_origin(base)
        if origin is dict:  # repeated KEY=VALUE, a fresh list per parse
            kw["action"] = "append"
            default = [f"{k}={v}" for k, v in default.items()]
        elif meta.get("action") == "append":
            kw["action"] = "append"
        elif origin is list:
            kw["type"] = csv_list
        elif base in (int, float):
            kw["type"] = _ranged(info) if info.has_bounds else base
        if "choices" in meta:
            kw["choices"] = tuple(NONE_WORD if c is None else c for c in meta["choices"])
            if default is None and NONE_WORD in kw["choices"]:
                default = NONE_WORD
        elif "flag" in meta and "metavar" not in meta:  # --lambda LAMBDA, not the field name
            kw["metavar"] = flags[-1].lstrip("-").replace("-", "_").upper()
        if default is dataclasses.MISSING or f.name in required:
            kw["required"] = True
        else:
            kw["default"] = default
        parser.add_argument(*flags, dest=f.name, **kw)


def _key_values(f: dataclasses.Field, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise argparse.ArgumentTypeError(
                f"{_flags(f, False)[-1]} expects {f.metadata.get('metavar', 'KEY=VALUE')}, got "
                f"{item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def dataclass_kwargs(cls: type, args: argparse.Namespace, *, only: Iterable[str] | None = None,
                     skip: Iterable[str] = ()) -> dict[str, Any]:
    """The constructor arguments of ``cls`` that :func:`add_dataclass_options` declared, read
    from the parsed ``args`` (a ``--no-flag`` switch gives ``flag=False``, ``none`` gives None;
    ``ArgumentTypeError`` for a malformed ``KEY=VALUE``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in _cli_fields(cls, only, skip):
        base = _base_type(hints[f.name])
        if base is bool and _field_default(f) is True and not f.metadata.get("positional"):
            out[f.name] = not getattr(args, _negated_dest(f))
            continue
        value = getattr(args, f.name)
        if typing.get_origin(base) is dict:
            value = _key_values(f, value or [])
        elif value == NONE_WORD and None in f.metadata.get("choices", ()):
            value = None
        out[f.name] = value
    return out


@dataclass
class OverwriteOption:
    """``--overwrite`` of the commands that write an output folder."""

    overwrite: bool = field(default=False, metadata={
        "help": "replace what --out holds and discard the checkpoints of an interrupted run "
                "(without it, such an --out is refused)"})


@dataclass(kw_only=True)
class SimTaskOptions:
    """The simulated arm and task of ``ate-ros sim-record`` and ``ate-ros eval``."""

    embodiment: str = field(metadata={
        "help": "simulated arm: sim_arm6, sim_arm5, sim_arm7 or a YAML path"})
    task: str = field(metadata={"help": "reach, push or pick_color"})


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` of the training commands (see ``core/training/output_guard.py``)."""
    add_dataclass_options(parser, OverwriteOption)


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
