"""Table formatting shared by the benchmark report modules, and the generic rendering of a
result file that no benchmark family renders itself (scalars as a list, records as tables)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")



def num(v: Any) -> str:
    """A compact, deterministic rendering of one value."""
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        text = json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(v)


def pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def ci(ci: Any, signed: bool = False) -> str:
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2):
        return ""
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"[{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]"



def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def is_row_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def rows_table(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return table(cols, ([num(r.get(c)) for c in cols] for r in rows))


def generic(data: Any, skip: Iterable[str] = (), depth: int = 0) -> list[str]:
    """Any JSON shape as a compact summary: scalars as a key/value list, lists of records and
    dicts of flat records as tables, anything else compacted onto one line."""
    if not isinstance(data, dict):
        return rows_table(data) if is_row_list(data) else [f"`{num(data)}`", ""]
    out: list[str] = []
    scalars = [(k, v) for k, v in data.items() if k not in skip
               and not isinstance(v, (dict, list))]
    if scalars:
        out += [f"- {k}: {num(v)}" for k, v in scalars] + [""]
    for k, v in data.items():
        if k in skip or not isinstance(v, (dict, list)):
            continue
        if is_row_list(v):
            out += [f"**{k}**", ""] + rows_table(v)
        elif (isinstance(v, dict) and v and all(isinstance(r, dict) for r in v.values())
              and all(not isinstance(x, (dict, list)) for r in v.values() for x in r.values())):
            out += [f"**{k}**", ""] + rows_table([{"": name, **r} for name, r in v.items()])
        elif isinstance(v, dict) and v and depth < 2:
            out += [f"**{k}**", ""] + generic(v, depth=depth + 1)
        else:
            out += [f"- {k}: `{num(v)}`", ""]
    return out


def _machine_dict_text(m: dict) -> str:
    """``result_meta``'s machine record as one readable line; unknown keys are kept as-is."""
    parts = []
    if m.get("cpu"):
        parts.append(str(m["cpu"]))
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    if "gpu" in m:
        parts.append(f"GPU: {m['gpu']}")
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    load = m.get("load_average")
    if isinstance(load, list) and load:
        parts.append("load average " + "/".join(f"{x:g}" for x in load))
    known = {"cpu", "cores", "gpu", "python", "load_average", "platform"}
    parts += [f"{k} {v}" for k, v in m.items() if k not in known]
    return ", ".join(parts)


def machine_text(data: Any) -> str:
    """The machine a result was made on, from its ``meta`` (or older top-level fields)."""
    if not isinstance(data, dict):
        return "not recorded"
    m = data.get("machine") or data.get("host")
    if isinstance(m, dict):
        return _machine_dict_text(m)
    if m:
        return str(m)
    parts = [f"{data[k]}" for k in ("device",) if isinstance(data.get(k), str)]
    if data.get("cpu_count"):
        parts.append(f"{data['cpu_count']} CPUs")
    if data.get("torch"):
        parts.append(f"torch {data['torch']}")
    return ", ".join(parts) + " (no machine field)" if parts else "not recorded"
