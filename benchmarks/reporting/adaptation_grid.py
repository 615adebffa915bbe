"""docs/benchmarks.md section of the adaptation grid results (``bench_adaptation.py`` and
``scan_inference_steering.py`` files with a ``table`` of success per K, method and scale).

The converged protocol's files are rendered by :mod:`.adaptation`.
"""

from __future__ import annotations

from typing import Any

from ate_ros.core.sim.evaluate import wilson_interval

from . import tables


def is_grid_result(data: Any) -> bool:
    """A result whose ``table`` holds one record with a ``success`` per K and method."""
    return isinstance(data, dict) and isinstance(data.get("table"), dict) and all(
        isinstance(r, dict) and "success" in r for r in data["table"].values())


def section(data: dict) -> list[str]:
    """bench_adaptation / scan_inference_steering: success per K and method, 95% intervals,
    and the paired difference to direct fine-tuning where it was computed."""
    table = data.get("table") or {}
    rows = sorted(table.values(), key=lambda r: (r.get("k", 0), str(r.get("method", "")),
                                                 r.get("scale", 0)))
    tasks: list[str] = []
    for r in rows:
        tasks += [t for t in (r.get("per_task") or {}) if t not in tasks]
    has_scale = any("scale" in r for r in rows)
    has_vs = any(r.get("vs_direct") for r in rows)
    has_mse = any(r.get("val_action_mse") is not None for r in rows)
    has_named = any(r.get("nearer_named") is not None for r in rows)
    header = ["K", "method"] + (["scale"] if has_scale else []) + ["success [95% CI]", "n"]
    header += tasks + (["vs direct [95% CI]"] if has_vs else [])
    header += (["held-out action MSE"] if has_mse else [])
    header += (["ended nearer named object"] if has_named else [])
    body: list[list[str]] = []
    zero = data.get("zero_shot")
    if isinstance(zero, dict) and zero:
        n = sum(v.get("episodes", 0) for v in zero.values())
        s = sum(v.get("successes", 0) for v in zero.values())
        row = ["0", "pre-trained (zero-shot)"] + ([""] if has_scale else [])
        row += [f"{tables.pct(s / n)} {tables.ci(wilson_interval(s, n))}" if n else "-", str(n)]
        row += [tables.pct(zero[t]["successes"] / zero[t]["episodes"]) if t in zero
                and zero[t].get("episodes") else "" for t in tasks]
        row += [""] * (has_vs + has_mse)
        if has_named:
            named = [(v["nearer_target"], v["episodes"]) for v in zero.values()
                     if v.get("nearer_target") is not None]
            row.append(tables.pct(sum(a for a, _ in named) / sum(b for _, b in named))
                       if named else "")
        body.append(row)
    for r in rows:
        row = [str(r.get("k", "")), str(r.get("method", ""))]
        row += [tables.num(r.get("scale"))] if has_scale else []
        row += [f"{tables.pct(r.get('success'))} {tables.ci(r.get('ci95'))}",
                tables.num(r.get("n"))]
        row += [tables.pct((r.get("per_task") or {}).get(t)) for t in tasks]
        if has_vs:
            vs = r.get("vs_direct")
            row.append("" if not vs else f"{100 * vs['diff']:+.1f} pts "
                       f"{tables.ci(vs.get('ci95'), signed=True)}"
                       + (" (separates)" if vs.get("separates") else " (overlaps 0)"))
        row += [tables.num(r.get("val_action_mse"))] if has_mse else []
        row += [tables.pct(r.get("nearer_named")) if r.get("nearer_named") is not None else ""] \
            if has_named else []
        body.append(row)
    out = tables.table(header, body)
    cfg = data.get("config")
    if isinstance(cfg, dict):
        keep = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
        out += ["Configuration: " + ", ".join(f"{k} {tables.num(v)}" for k, v in keep.items()), ""]
    return out

