"""docs/benchmarks.md section of ``bench_rtc.py`` (chunking modes under inference delay)."""

from __future__ import annotations

from typing import Any

from . import tables


def is_rtc_result(data: Any) -> bool:
    """A result whose ``rows`` each carry a chunking ``mode`` and a ``delay``."""
    return isinstance(data, dict) and tables.is_row_list(data.get("rows")) and all(
        "mode" in r and "delay" in r for r in data["rows"])


def section(data: dict) -> list[str]:
    """bench_rtc: chunking modes under inference delay (rows of mode x delay)."""
    body = [[str(r["mode"]), str(r["delay"]),
             f"{tables.pct(r.get('success_rate'))} {tables.ci(r.get('ci95'))}",
             tables.num(r.get("switch_velocity_jump")),
             tables.num(r.get("switch_peak_acceleration")),
             tables.num(r.get("rms_jerk")), tables.num(r.get("completion_time_s")),
             tables.pct(r.get("pause_fraction"))] for r in data["rows"]]
    out = tables.table(["mode", "D", "success [95% CI]", "switch velocity jump (rad/s)",
                  "peak accel at switches (rad/s²)", "RMS jerk (rad/s³)",
                  "completion (s)", "held"], body)
    meta = data.get("meta") or {}
    out += [f"Cells: {', '.join(meta.get('arms', []))}; {', '.join(meta.get('tasks', []))}; "
            f"{meta.get('seeds')} seed(s) x {meta.get('episodes_per_seed')} episodes. "
            f"{meta.get('metrics', '')}", ""]
    if data.get("targets"):
        out += ["Issue 30 targets:", ""] + [f"- {t}" for t in data["targets"]] + [""]
    return out
