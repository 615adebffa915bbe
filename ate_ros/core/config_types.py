"""Type checks of a config read from a file against its dataclass, before it is built.

A ``config.json`` that parses but holds a string where ``d_model`` is an int, a list where a
name is expected or a NaN learning rate must be refused by name at load time, not fail later
deep inside model construction ("not all arguments converted during string formatting").
:func:`check_types` walks the dataclass annotations: ``int`` (not ``bool``), ``float`` (an
int is fine; NaN/inf are not), ``str``, ``bool``, ``list[X]`` / ``tuple[X, ...]``,
``dict[str, X]``, ``X | None`` and nested dataclasses; ``Any`` and other annotations are not
checked. Relations between fields stay the dataclass's own ``__post_init__`` business.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigTypeError(ValueError):
    """A config value has the wrong type; the message names the field (``a.b[0]``)."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _check(value: Any, annotation: Any, where: str) -> None:
    if annotation is Any or annotation is typing.Any:
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                _check(value, option, where)
                return
            except ConfigTypeError as exc:
                errors.append(str(exc))
        raise ConfigTypeError(errors[0] if len(errors) == 1 else
                              f"{where}: {_describe(value)} matches none of "
                              f"{[getattr(o, '__name__', str(o)) for o in options]}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigTypeError(f"{where}: {_describe(value)} is not one of {list(args)}")
        return
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigTypeError(f"{where}: expected a list, got {_describe(value)}")
        item = args[0] if args and (origin is not tuple or args[-1] is Ellipsis
                                    or len(args) == 1) else None
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigTypeError(f"{where}: expected {len(args)} values, got {len(value)}")
            for i, (v, a) in enumerate(zip(value, args)):
                _check(v, a, f"{where}[{i}]")
            return
        if item is not None:
            for i, v in enumerate(value):
                _check(v, item, f"{where}[{i}]")
        return
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigTypeError(f"{where}: expected an object, got {_describe(value)}")
        if len(args) == 2:
            for k, v in value.items():
                _check(v, args[1], f"{where}.{k}")
        return
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigTypeError(f"{where}: expected an object, got {_describe(value)}")
        check_types(annotation, value, prefix=f"{where}.")
        return
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(f"{where}: expected true/false, got {_describe(value)}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(f"{where}: expected an integer, got {_describe(value)}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"{where}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ConfigTypeError(f"{where}: expected a finite number, got {value}")
    elif annotation is str:
        if not isinstance(value, str):
            raise ConfigTypeError(f"{where}: expected a string, got {_describe(value)}")


def check_types(cls: type, data: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigTypeError` naming the first field of ``data`` (a parsed JSON/YAML
    object meant for ``cls(**data)``) whose value does not fit the field's annotation.

    Unknown and missing keys are left to the constructor (``strict_from_dict`` names them).
    """
    if not isinstance(data, dict):
        raise ConfigTypeError(f"{prefix.rstrip('.') or cls.__name__}: expected an object, got "
                              f"{_describe(data)}")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data:
            _check(data[f.name], hints[f.name], prefix + f.name)
