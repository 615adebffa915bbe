"""Mutations of parsed config documents (JSON/YAML) for the property-based bad-input tests, and
the record of their outcomes that ``docs/reliability.md`` is generated from.

A mutation is (path, class, pick): ``path`` leads from the document's root to one value (dict
keys and list indices), ``class`` is one of :data:`MUTATION_CLASSES`, and ``pick`` (an integer
hypothesis draws) chooses among the bad values of that class, so a case is reproducible from
its three parts.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MISSING, EXTRA, WRONG_TYPE, WRONG_SHAPE, LIST_FOR_OBJECT, NAN = (
    "missing", "extra", "wrong type", "wrong shape", "list for object", "NaN")
MUTATION_CLASSES = (MISSING, EXTRA, WRONG_TYPE, WRONG_SHAPE, LIST_FOR_OBJECT, NAN)

RECORD_ENV = "ATE_ROS_RELIABILITY_RECORD"
"""When set, the bad-input tests add their outcomes to the JSON file it names."""

# Values of another type than the one replaced, by the replaced value's type.
_OTHER_TYPES: list[Any] = ["x", "", 3, -1, 0.5, True, None, {"a": 1}, [1, "b"]]


def field_paths(node: Any, prefix: tuple = (), list_items: int = 2) -> Iterator[tuple]:
    """Every path into ``node`` (the root ``()`` included); lists contribute their first
    ``list_items`` elements."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from field_paths(v, (*prefix, k), list_items)
    elif isinstance(node, list):
        for i, v in enumerate(node[:list_items]):
            yield from field_paths(v, (*prefix, i), list_items)


def _same_kind(a: Any, b: Any) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b)
    if isinstance(a, number) and isinstance(b, number):
        return True
    return type(a) is type(b)


def bad_value(value: Any, how: str, pick: int) -> Any:
    """A replacement for ``value`` of class ``how`` (not :data:`MISSING`)."""
    if how == WRONG_TYPE:
        others = [v for v in _OTHER_TYPES if not _same_kind(v, value)]
        return others[pick % len(others)]
    if how == WRONG_SHAPE:
        if isinstance(value, list):
            return [value, value] if pick % 3 == 0 else (value[:-1] if pick % 3 == 1
                                                         else [*value, *value[:1], 0])
        if isinstance(value, dict):
            return [[value]]
        return [value, value] if pick % 2 else [[value]]
    if how == LIST_FOR_OBJECT:
        if isinstance(value, dict):
            return list(value.values()) if pick % 2 else list(value)
        return [value]
    if how == NAN:
        if isinstance(value, list) and value:
            return [math.nan] * len(value)
        return math.nan if pick % 2 else [math.nan]
    raise ValueError(f"no bad value for class {how!r}")


def mutate(doc: Any, path: tuple, how: str, pick: int) -> Any:
    """A mutated deep copy of ``doc``. ``missing`` at the root gives ``None`` (an empty file);
    ``extra`` adds a key to the object at ``path`` (or, below a non-object, replaces the value
    with an object holding it and an unknown key)."""
    doc = copy.deepcopy(doc)
    if how == EXTRA:
        target = _get(doc, path)
        if isinstance(target, dict):
            target[f"unexpected_{pick % 7}"] = pick
            return doc
        return _set(doc, path, {"value": target, f"unexpected_{pick % 7}": pick})
    if how == MISSING:
        if not path:
            return None
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    return _set(doc, path, bad_value(_get(doc, path), how, pick))


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def describe(path: tuple, how: str, pick: int) -> str:
    return f"{'.'.join(map(str, path)) or '<root>'} {how} (pick {pick})"


class OutcomeRecord:
    """Count of cases and outcomes per (target, bad-input class); :meth:`write` merges them into
    the JSON file named by :data:`RECORD_ENV` (one file for several test modules)."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.counts: dict[tuple[str, str], Counter] = defaultdict(Counter)

    def add(self, target: str, how: str, outcome: str) -> None:
        self.counts[(target, how)][outcome] += 1

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def write(self, path: str | Path | None = None) -> Path | None:
        path = path or os.environ.get(RECORD_ENV)
        if not path:
            return None
        path = Path(path)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[self.suite] = [
            {"target": t, "class": h, "cases": sum(c.values()),
             "outcomes": dict(sorted(c.items()))}
            for (t, h), c in sorted(self.counts.items())]
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
