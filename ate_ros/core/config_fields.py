"""Strict construction of config dataclasses from JSON/YAML mappings."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


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
