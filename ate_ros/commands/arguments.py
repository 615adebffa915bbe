"""Argument types shared by the ``ate-ros`` subcommands."""

from __future__ import annotations


def csv_list(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (argparse ``type=`` for comma-separated lists)."""
    return [v for v in (s.strip() for s in value.split(",")) if v]
