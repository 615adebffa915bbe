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
}
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
    total = sum(r["cases"] for rows in suites.values() for r in rows)
    out = [header, "# Reliability: the bad inputs the suite tries", "",
           f"- recorded: {meta.get('date', 'not recorded')} at commit "
           f"{meta.get('commit', 'unknown')}",
           f"- machine: {tables.machine_text(meta)}",
           f"- reproduce: `{meta.get('command', 'python benchmarks/record_reliability.py')}`",
           f"- total: **{total} mutated inputs** across "
           f"{len({r['target'] for rows in suites.values() for r in rows})} loaders and commands",
           "", "Outcomes: " + ALLOWED, ""]
    for name, rows in suites.items():
        out += [f"## {SUITE_TITLES.get(name, name)}", ""]
        per_target: dict[str, Counter] = defaultdict(Counter)
        cases: Counter = Counter()
        for r in rows:
            per_target[r["target"]].update(r["outcomes"])
            cases[r["target"]] += r["cases"]
        out += tables.table(["loader / command", "cases", "outcomes"],
                            [[t, str(cases[t]), _outcomes(per_target[t])]
                             for t in sorted(per_target)])
        out += ["Per bad-input class:", ""]
        out += tables.table(["loader / command", "bad input", "cases", "outcomes"],
                            [[r["target"], r["class"], str(r["cases"]),
                              _outcomes(Counter(r["outcomes"]))] for r in rows])
    return "\n".join(out)
