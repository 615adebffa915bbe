"""docs/benchmarks.md section and README block of the converged adaptation benchmark
(``benchmarks/bench_adaptation.py`` result files: ``meta``, ``summary``, ``rows``).

Pure functions of the parsed JSON; ``tools/gen_docs.py`` calls :func:`section` for each such
file and :func:`readme_block` for the README's "Does ATE help here?" block.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

METHOD_LABELS = {"direct": "direct", "ate": "ATE", "ate_stage1": "ATE, stage-1 encoder"}


def is_converged_result(data: Any) -> bool:
    return isinstance(data, dict) and data.get("protocol") == "converged" and \
        isinstance(data.get("summary"), list)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _pts(v: float | None, ci: list[float] | None) -> str:
    if v is None or ci is None:
        return "-"
    sep = " (separates)" if ci[0] > 0 or ci[1] < 0 else " (overlaps 0)"
    return f"{100 * v:+.1f} pts [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]{sep}"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in body), ""]


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def warnings(data: dict) -> list[str]:
    """One line per (track, pair) whose direct baseline falls with K (not converged)."""
    return [f"**Warning: {key}: direct fine-tuning's converged success falls as K grows "
            "beyond its intervals (`direct_monotone_in_k` false): these runs have not "
            "converged, read the table as a budget comparison.**"
            for key, ok in sorted((data.get("direct_monotone_in_k") or {}).items())
            if ok is False]


def section(data: dict) -> list[str]:
    """The benchmark page's table for one converged-protocol result file."""
    out = warnings(data)
    out += [""] if out else []
    methods = [m for m in METHOD_LABELS if any(m in e["methods"] for e in data["summary"])]
    methods += sorted({m for e in data["summary"] for m in e["methods"]} - set(methods))
    header = ["track", "pair", "K", *(f"{METHOD_LABELS.get(m, m)} [Wilson 95%]" for m in methods),
              *(f"{METHOD_LABELS.get(m, m)} - direct [bootstrap 95%]" for m in methods
                if m != "direct"), "AUC ratio (ATE/direct)", "speed-up (ATE)",
              "converged steps (direct; ATE)"]
    body = []
    for e in data["summary"]:
        ms = e["methods"]
        row = [e["track"], e["pair"], str(e["k"])]
        row += [f"{_pct(ms[m]['converged_success'])} [{100 * ms[m]['wilson95'][0]:.0f}, "
                f"{100 * ms[m]['wilson95'][1]:.0f}]" if m in ms else "-" for m in methods]
        row += [_pts(ms[m].get("minus_direct"), ms[m].get("minus_direct_ci95")) if m in ms
                else "-" for m in methods if m != "direct"]
        row += [_x(e.get("auc_ratio")), _x(e.get("speedup")),
                f"{(ms.get('direct') or {}).get('converged_steps', '-')}; "
                f"{(ms.get('ate') or {}).get('converged_steps', '-')}"]
        body.append(row)
    out += _table(header, body)
    mono = data.get("direct_monotone_in_k") or {}
    m = data.get("meta") or {}
    cfg = data.get("config") or {}
    out += [f"- split: {data.get('split')}; training seeds {data.get('seeds')}; validation "
            f"episodes {(data.get('episodes') or {}).get('validation')}, evaluation episodes "
            f"{(data.get('episodes') or {}).get('evaluation')}",
            f"- runs finished: {data.get('runs_finished')} of {data.get('runs_expected')}; "
            f"total CPU time {data.get('cpu_s_total', 0) / 3600:.2f} h (sum over runs, "
            "fine-tuning and rollouts; data and alignment not counted)",
            f"- commit {m.get('commit')}; seeds {m.get('seeds')}",
            f"- schedule {cfg.get('schedule')}, no stop before step {cfg.get('min_steps', 0)}, "
            f"then stop after {cfg.get('patience')} checkpoints "
            f"without a validation gain > {cfg.get('min_gain')}; {cfg.get('val_episodes')} "
            f"validation / {cfg.get('eval_episodes')} evaluation episodes per task and "
            f"checkpoint; lambda {cfg.get('lam')}, clamp {cfg.get('clamp')}, direction "
            f"{cfg.get('direction')}",
            f"- direct_monotone_in_k: {mono}"]
    if data.get("chosen"):
        out.append(f"- chosen for the report split: {data['chosen']}")
    out += ["", "Intervals:", ""]
    out += [f"- {k}: {v}" for k, v in (data.get("intervals") or {}).items()]
    return out + [""]


def readme_block(results: Path, load) -> list[str]:
    """The README's adaptation lines: the report run only (``bench_adaptation.json``)."""
    path = results / "bench_adaptation.json"
    if not path.is_file():
        return [textwrap.fill(
            "Adaptation (`benchmarks/bench_adaptation.py`, converged protocol): no report run is "
            "complete yet. Earlier fixed-budget results were retired (issue #28: training "
            "stopped before it converged, and the guidance settings were chosen on the "
            "reported training seeds), and so were the first converged runs, made while push's "
            "horizon was too short for the task (`benchmarks/probe_push.py`); docs/benchmarks.md "
            "shows the runs finished since.", 99), ""]
    data = load(path)
    lines = warnings(data)
    done = data.get("runs_finished") == data.get("runs_expected")
    lines += [textwrap.fill(
        f"Adaptation, converged protocol, report split (`benchmarks/bench_adaptation.py`, "
        f"{data.get('runs_finished')} of {data.get('runs_expected')} runs"
        + ("" if done else "; incomplete, not a result yet") + "):", 99), ""]
    body = [[e["track"], e["pair"], str(e["k"]), _pct(e.get("direct")), _pct(e.get("ate")),
             _pts(e.get("ate_minus_direct"), e.get("ci95")), _x(e.get("speedup"))]
            for e in data["summary"]]
    lines += _table(["track", "pair", "K", "direct", "ATE", "ATE - direct [bootstrap 95%]",
                     "speed-up"], body)
    return lines
