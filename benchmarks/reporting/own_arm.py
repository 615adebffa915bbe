"""docs/benchmarks.md section and README sentence of ``bench_own_arm.py``
(``own_arm_success*.json``: closed-loop success of each policy on the arms it was trained on)."""

from __future__ import annotations

from typing import Any

from . import tables


def is_own_arm_result(data: Any) -> bool:
    """A result whose ``rows`` each carry a ``success_rate``."""
    return isinstance(data, dict) and tables.is_row_list(data.get("rows")) and all(
        "success_rate" in r for r in data["rows"])


def section(data: dict) -> list[str]:
    """own_arm_success: closed-loop success of each policy on the arms it was trained on."""
    body = [[str(r.get("policy", "")), str(r.get("arm", "")), str(r.get("task", "")),
             f"{tables.pct(r.get('success_rate'))} {tables.ci(r.get('ci95'))}"]
            for r in sorted(data.get("rows") or [], key=lambda r: (str(r.get("policy")),
                                                                   str(r.get("arm")),
                                                                   str(r.get("task"))))]
    out = tables.table(["policy", "arm", "task", "success [95% CI]"], body)
    return out + tables.generic(data, skip=("rows", "benchmark", "date", "machine", "command"))


def readme_line(data: dict) -> str:
    """One sentence: the adapted policy's lowest own-arm success and whether all meet 80%."""
    rows = [r for r in data.get("rows") or [] if r.get("policy") == "pretrained_lowdim"]
    if not rows:
        return ""
    low = min(rows, key=lambda r: r["success_rate"])
    met = all(r["success_rate"] >= 0.8 for r in rows)
    return (f"On its own arms the adapted policy succeeds in {tables.pct(low['success_rate'])} to "
            f"100% of episodes per task and arm (lowest: {low['task']} on {low['arm']}, "
            f"{low['episodes']} episodes), {'meeting' if met else 'short of'} the 80% that a "
            "meaningful adaptation comparison needs.")
