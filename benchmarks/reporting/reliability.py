"""docs/reliability.md: the bad inputs the reliability suites try, per command or loader, with
the count of cases and their outcomes (``benchmarks/results/reliability/record.json``, written
by ``benchmarks/record_reliability.py``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from . import tables

SUITE_TITLES = {
    "malformed_inputs": "Malformed config files and datasets, per loader and command "
                        "(test/project/test_malformed_inputs.py)",
    "embodiment_fuzz": "Mutated embodiment files (test/project/test_reliability_fuzz.py)",
    "startup_interrupts": "Ctrl-C at each moment of a node's start-up, per node and moment "
                          "(test/nodes/test_startup_sigint.py)",
}
INTERRUPT_SUITES = ("startup_interrupts",)
"""Suites whose cases are interrupts, not mutated inputs (counted apart)."""
INTERRUPTS = ("Ctrl-C: the node process, started as `ros2 launch` starts it and driven through "
              "configure and activate as the launch files' autostart does, gets SIGINT at the "
              "moment named; every case must exit 0 without a traceback or an ERROR line. "
              "\"rcl's rosout line\": a line logged in the microseconds in which the signal "
              "thread shuts the context down makes rcl print that it could not reach /rosout "
              "(docs/design_notes.md, \"Clean Ctrl-C\").")
ALLOWED = ("accepted: the mutation leaves a valid input (a field the loader does not read, an "
           "optional key); project error / one-line error: the loader raises the project's own "
           "error naming the file and field, or the command prints one `ate-ros <command>: "
           "error:` line on stderr and exits non-zero, leaving no output behind. Any other "
           "outcome (a traceback, a partial --out, exit 0 on bad data) fails the test, so a "
           "record exists only for a passing suite.")


def _outcomes(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


def render(record: dict[str, Any], header: str) -> str:
    """The page: meta, totals, one table per suite (target x bad-input class) and a per-target
    summary."""
    meta = record.get("meta") or {}
    suites: dict[str, list[dict]] = record.get("suites") or {}
    inputs = {n: rows for n, rows in suites.items() if n not in INTERRUPT_SUITES}
    total = sum(r["cases"] for rows in inputs.values() for r in rows)
    interrupts = sum(r["cases"] for n in INTERRUPT_SUITES for r in suites.get(n, []))
    out = [header, "# Reliability: the bad inputs the suite tries", "",
           f"- recorded: {meta.get('date', 'not recorded')} at commit "
           f"{meta.get('commit', 'unknown')}",
           f"- machine: {tables.machine_text(meta)}",
           f"- reproduce: `{meta.get('command', 'python benchmarks/record_reliability.py')}`",
           f"- total: **{total} mutated inputs** across "
           f"{len({r['target'] for rows in inputs.values() for r in rows})} loaders and commands"
           + (f"; **{interrupts} interrupts** of node start-up" if interrupts else ""),
           "", "Outcomes: " + ALLOWED, ""]
    if interrupts:
        out[-1:-1] = ["", INTERRUPTS]
    for name, rows in suites.items():
        out += [f"## {SUITE_TITLES.get(name, name)}", ""]
        per_target: dict[str, Counter] = defaultdict(Counter)
        cases: Counter = Counter()
        for r in rows:
            per_target[r["target"]].update(r["outcomes"])
            cases[r["target"]] += r["cases"]
        target, how = ("node", "moment") if name in INTERRUPT_SUITES else (
            "loader / command", "bad input")
        out += tables.table([target, "cases", "outcomes"],
                            [[t, str(cases[t]), _outcomes(per_target[t])]
                             for t in sorted(per_target)])
        out += [f"Per {how}:" if name in INTERRUPT_SUITES else "Per bad-input class:", ""]
        out += tables.table([target, how, "cases", "outcomes"],
                            [[r["target"], r["class"], str(r["cases"]),
                              _outcomes(Counter(r["outcomes"]))] for r in rows])
    return "\n".join(out)
