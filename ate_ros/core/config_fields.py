"""One walk over config dataclasses: the fields, their metadata, and their validation.

Every config dataclass declares a setting once, as a field whose ``metadata`` carries:

``help``
    one line for ROS parameter descriptions, CLI options and the generated docs.
``choices``
    the allowed values (a tuple).
``min`` / ``max``
    inclusive numeric bounds. A strict bound adds ``"min_exclusive": True`` (or
    ``"max_exclusive": True``): a rate, period or duration that must be > 0 is
    ``{"min": 0.0, "min_exclusive": True}``; a count that must be >= 1 is ``{"min": 1}``. A
    sentinel value outside the bounds (``0 = never``) cannot be expressed: give such a field
    ``"min": 0`` and say what 0 means in its help. For a list field the bounds and choices
    apply to each element; ``None`` (an optional field left unset) is never checked.
``read_only``
    a ROS parameter that cannot change after the node started.
``ros``
    ``False`` keeps the field out of the ROS parameters (and out of the node docs).

:func:`walk_fields` yields one :class:`FieldInfo` per leaf field (nested dataclasses flattened
with dots: ``execution.blend``), which ``ate_ros.ros.params`` declares as ROS parameters,
``tools/gen_docs.py`` documents and the launch tests check files against. :func:`validate_fields`,
called from each config's ``__post_init__``, enforces ``choices`` and the bounds, so no config
restates them by hand: ``__post_init__`` keeps only relations between fields.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["FieldInfo", "bound_text", "check_value", "field_default", "field_info",
           "strict_from_dict", "unwrap_optional", "validate_fields", "walk_fields"]


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One leaf field of a config dataclass, as every interface sees it.

    ``type`` is the annotation with ``| None`` removed (``optional`` says it was there);
    ``default`` is the field's default (``default_factory()`` called; ``MISSING`` when it has
    none); ``path`` is the attribute path from the walked class (``("execution", "blend")``).
    """

    name: str
    path: tuple[str, ...]
    type: Any
    optional: bool
    default: Any
    help: str
    choices: tuple | None
    min: float | None
    max: float | None
    min_exclusive: bool
    max_exclusive: bool
    read_only: bool
    ros: bool
    owner: type
    metadata: Mapping[str, Any]

    @property
    def has_bounds(self) -> bool:
        return self.min is not None or self.max is not None

    @property
    def is_list(self) -> bool:
        tp = self.type
        return typing.get_origin(tp) in (list, tuple) or tp in (list, tuple)

    @property
    def element_type(self) -> Any:
        """The element type of a list field (``str`` for a bare ``list``), else ``type``."""
        if not self.is_list:
            return self.type
        args = typing.get_args(self.type)
        return args[0] if args else str


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other annotation -> ``(tp, False)``.

    Raises:
        TypeError: a union of several non-None types (no interface can declare it).
    """
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
        raise TypeError(f"unsupported union type {tp}")
    return tp, False


def field_default(f: dataclasses.Field) -> Any:
    """The default of ``f`` (``default_factory()`` called; ``MISSING`` when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def walk_fields(cls: type, prefix: str = "", *, ros_only: bool = False,
                _defaults: Any = None) -> Iterator[FieldInfo]:
    """The leaf fields of a config dataclass in declaration order, nested dataclasses
    flattened (``prefix`` + dotted names). Fields with ``init=False`` are left out, and with
    ``ros_only`` those (and nested configs) marked ``metadata={"ros": False}``. A nested
    field's default is the one of its parent's default instance (``stage2:
    StageConfig = field(default_factory=lambda: StageConfig(epochs=150))`` gives
    ``stage2.epochs`` the default 150)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        ros = f.metadata.get("ros", True) is not False
        if not f.init or (ros_only and not ros):
            continue
        name = f"{prefix}{f.name}"
        tp, optional = unwrap_optional(hints[f.name])
        default = getattr(_defaults, f.name) if _defaults is not None else field_default(f)
        if dataclasses.is_dataclass(tp):
            yield from walk_fields(tp, f"{name}.", ros_only=ros_only,
                                   _defaults=default if dataclasses.is_dataclass(default)
                                   else None)
            continue
        yield field_info(cls, f, name=name, type_=tp, optional=optional, default=default,
                         ros=ros)


def field_info(cls: type, f: dataclasses.Field, *, name: str | None = None, type_: Any = None,
               optional: bool | None = None, default: Any = dataclasses.MISSING,
               ros: bool | None = None) -> FieldInfo:
    """The :class:`FieldInfo` of one field ``f`` of ``cls`` (what :func:`walk_fields` yields;
    the command-line helper builds its options from the same record)."""
    if type_ is None or optional is None:
        type_, optional = unwrap_optional(typing.get_type_hints(cls)[f.name])
    if default is dataclasses.MISSING:
        default = field_default(f)
    if ros is None:
        ros = f.metadata.get("ros", True) is not False
    name = name or f.name
    md = f.metadata
    choices = md.get("choices")
    return FieldInfo(
        name=name, path=tuple(name.split(".")), type=type_, optional=optional,
        default=default, help=str(md.get("help", "")).strip(),
        choices=tuple(choices) if choices is not None else None,
        min=md.get("min"), max=md.get("max"),
        min_exclusive=bool(md.get("min_exclusive", False)),
        max_exclusive=bool(md.get("max_exclusive", False)),
        read_only=bool(md.get("read_only", False)), ros=ros, owner=cls, metadata=md)


def bound_text(info: FieldInfo) -> str:
    """The bounds as a reader writes them: ``> 0``, ``>= 1``, ``in (0, 1]``."""
    lo, hi = info.min, info.max
    if lo is not None and hi is not None:
        return (f"in {'(' if info.min_exclusive else '['}{lo}, {hi}"
                f"{')' if info.max_exclusive else ']'}")
    if lo is not None:
        return f"{'>' if info.min_exclusive else '>='} {lo}"
    if hi is not None:
        return f"{'<' if info.max_exclusive else '<='} {hi}"
    return "any value"


def _within(info: FieldInfo, v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, float) and math.isnan(v):
        return False
    if info.min is not None and (v <= info.min if info.min_exclusive else v < info.min):
        return False
    return not (info.max is not None and (v >= info.max if info.max_exclusive
                                          else v > info.max))


def check_value(info: FieldInfo, value: Any, name: str | None = None) -> None:
    """Refuse ``value`` for ``info`` if it is outside the field's choices or bounds.

    Raises:
        ValueError: naming the field (``name``, default ``info.name``), the value and what is
            allowed, e.g. ``rate_hz must be > 0.0, got -1.0``.
    """
    if value is None and info.optional:
        return
    name = name or info.name
    items = list(value) if info.is_list and isinstance(value, (list, tuple)) else [value]
    for v in items:
        if info.choices is not None and v not in info.choices:
            raise ValueError(f"{name} must be one of {info.choices}, got {v!r}")
        if info.has_bounds and not _within(info, v):
            raise ValueError(f"{name} must be {bound_text(info)}, got {v!r}")


def validate_fields(config: Any) -> None:
    """Enforce the ``choices`` and bounds of ``config``'s own leaf fields (call it first in
    ``__post_init__``; a nested config validates itself when it is constructed).

    Raises:
        ValueError: the first field outside its metadata, named as in :func:`check_value`.
    """
    for info in _own_fields(type(config)):
        check_value(info, getattr(config, info.name))


@functools.cache
def _own_fields(cls: type) -> tuple[FieldInfo, ...]:
    return tuple(i for i in walk_fields(cls) if len(i.path) == 1)


def strict_from_dict(cls: type[T], data: dict[str, Any], error: type[Exception] = ValueError
                     ) -> T:
    """``cls(**data)``, refusing unknown keys by name (a typo in a YAML file must not be ignored).

    ``__post_init__`` validation of ``cls`` still runs; ``error`` is raised for unknown keys and
    for arguments the constructor rejects.
    """
    if not isinstance(data, dict):
        raise error(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise error(f"invalid {cls.__name__}: {exc}") from exc
