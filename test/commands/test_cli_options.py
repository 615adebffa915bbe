"""Every ``ate-ros`` option that existed before the options came from dataclasses still exists,
with the same flags, default, type, choices and arity, and every option has help text.

``test/fixtures/cli_options.json`` is the snapshot of every subcommand's options taken before
the change (the hand-written ``add_argument`` calls); an option may gain aliases, never lose one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ate_ros.cli import available_commands, build_parser

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "cli_options.json"
REPO = Path(__file__).resolve().parents[2]
COMPARED = ("default", "type", "choices", "nargs", "required", "const", "action")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _portable(default):
    """A default under the checkout, written as ``<repo>/...`` (the snapshot's form)."""
    if isinstance(default, str) and default.startswith(str(REPO) + "/"):
        return "<repo>/" + default[len(str(REPO)) + 1:]
    return default


def _describe(a: argparse.Action) -> dict:
    return {"default": _portable(a.default),
            "type": getattr(a.type, "__name__", None) if a.type else None,
            "choices": list(a.choices) if a.choices is not None else None, "nargs": a.nargs,
            "required": a.required, "const": a.const, "action": type(a).__name__}


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return _subparsers()


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, argparse._HelpAction)]


def _find(p: argparse.ArgumentParser, old: dict) -> argparse.Action | None:
    for a in _options(p):
        if old["options"] and set(old["options"]) <= set(a.option_strings):
            return a
        if not old["options"] and not a.option_strings and a.dest == old["dest"]:
            return a
    return None


SNAP = json.loads(SNAPSHOT.read_text())


@pytest.mark.parametrize("command", sorted(SNAP))
def test_every_option_of_the_snapshot_is_unchanged(parsers, command):
    p = parsers[command]
    changed = {}
    for old in SNAP[command]:
        new = _find(p, old)
        if new is None:
            changed[tuple(old["options"]) or old["dest"]] = "missing"
            continue
        now = _describe(new)
        diff = {k: (old[k], now[k]) for k in COMPARED if old[k] != now[k]}
        if "choices" in diff and sorted(old["choices"]) == sorted(now["choices"]):
            del diff["choices"]  # the same choices, listed in the config's order
        if diff:
            changed[tuple(old["options"]) or old["dest"]] = diff
    assert not changed, changed


def test_every_command_is_in_the_snapshot_and_every_option_has_help(parsers):
    assert sorted(SNAP) == sorted(name for name, _, _ in available_commands())
    no_help = {(name, a.option_strings[0] if a.option_strings else a.dest)
               for name, p in parsers.items() for a in _options(p) if not (a.help or "").strip()}
    assert not no_help, sorted(no_help)


def test_snapshot_defaults_parse_to_the_same_values(parsers):
    """Parsing only the required arguments gives each option its snapshot default (what the
    commands then read), e.g. ``--no-x`` switches off, ``--compression none``."""
    for command, options in SNAP.items():
        p = parsers[command]
        argv = []
        for old in options:
            if old["required"] or (not old["options"] and old["nargs"] != "?"):
                argv += ([old["options"][0]] if old["options"] else []) + ["x"]
        args = vars(p.parse_args(argv))
        for old in options:
            if not old["required"] and (old["options"] or old["nargs"] == "?"):
                value = _portable(args[_find(p, old).dest])
                assert value == old["default"], (command, old["options"])


def test_a_command_line_declares_only_its_own_command_options():
    """``ate-ros X`` builds X's options only: the others' config modules (some beside torch)
    are not imported, and ``ate-ros --help`` imports no command module."""
    code = ("import sys, json; from ate_ros.cli import build_parser, _command_in; "
            "cmd = _command_in(sys.argv[1:]); build_parser(only=cmd); "
            "mods = sorted(m for m in sys.modules if m.startswith('ate_ros.commands.')); "
            "print(json.dumps([mods, 'torch' in sys.modules]))")

    def imported(*argv: str) -> list:
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parents[2])
        return json.loads(out.stdout)

    assert imported("--help") == [[], False]
    assert imported("-v", "verify-dataset", "--help") == [
        ["ate_ros.commands.arguments", "ate_ros.commands.verify_dataset"], False]
