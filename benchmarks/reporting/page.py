"""docs/benchmarks.md: one section per ``benchmarks/results/*.json`` (its table, date, machine
and the command that reproduces it), each rendered by its benchmark family's report module."""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import adaptation, adaptation_grid, own_arm, rtc, tables

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _script_for(stem: str) -> tuple[str, str]:
    """The benchmark script a result file comes from (longest matching name), and the rest."""
    scripts = sorted((p.stem for p in (ROOT / "benchmarks").glob("*.py")), key=len, reverse=True)
    for s in scripts:
        if stem == s or stem.startswith(s + "_"):
            return s, stem[len(s) + 1:]
    if stem.startswith("own_arm_success"):
        return "bench_own_arm", stem[len("own_arm_success") + 1:]
    return stem, ""


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _file_date(path: Path, dirty: set[str]) -> str:
    """The git commit date of a result file; today's for one not committed as it is (it will be
    committed with the page), so the page does not change when it is."""
    rel = path.relative_to(ROOT).as_posix()
    if rel not in dirty:
        date = _git("log", "-1", "--format=%cs", "--", rel)
        if date:
            return date
    return datetime.date.today().isoformat()


_VARIANT_FLAGS = {"bench_ros_latency": {"processes": "--processes", "soak": "--soak",
                                         "sensors": "--observation-source sensors"}}
"""Result-file name parts that one flag of the script produces."""


def _command(data: Any, script: str, variant: str) -> tuple[str, str]:
    """The command that reproduces a result file, and a note on what it cannot say."""
    if isinstance(data, dict) and isinstance(data.get("command"), str):
        return data["command"], ""
    cmd = [f"python benchmarks/{script}.py"]
    parts = variant.split("_") if variant else []
    flags = _VARIANT_FLAGS.get(script, {})
    if variant == "quick" or (isinstance(data, dict) and data.get("quick") is True):
        return " ".join(cmd + ["--quick"]), ""
    if variant and all(p in flags for p in parts):
        return " ".join(cmd + [flags[p] for p in parts]), ""
    if variant and script in ("bench_adaptation", "scan_inference_steering"):
        return " ".join(cmd + ["--tag", variant]), "with the options of its configuration"
    if variant:
        return " ".join(cmd), f"variant `{variant}`: options as in the fields below"
    return " ".join(cmd), ""


def _render_result(path: Path, dirty: set[str]) -> list[str]:
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"### {path.name}", "", f"Could not be read: {e}", ""]
    script, variant = _script_for(path.stem)
    # Newer results keep date, machine and command under "meta"; renderers read the file as is.
    info = {**data, **data["meta"]} if isinstance(data, dict) and isinstance(
        data.get("meta"), dict) else data
    cmd, note = _command(info, script, variant)
    date = info.get("date") if isinstance(info, dict) and info.get("date") else \
        _file_date(path, dirty)
    out = [f"### {path.name}", "",
           f"- date: {date}", f"- machine: {tables.machine_text(info)}",
           f"- reproduce: `{cmd}`" + (f" ({note})" if note else ""), ""]
    renderer: Callable[[Any], list[str]]
    if adaptation.is_converged_result(data):
        renderer = adaptation.section
    elif adaptation_grid.is_grid_result(data):
        renderer = adaptation_grid.section
    elif rtc.is_rtc_result(data):
        renderer = rtc.section
    elif own_arm.is_own_arm_result(data):
        renderer = own_arm.section
    else:
        def renderer(d: Any) -> list[str]:
            return tables.generic(d, skip=("benchmark", "date", "machine", "command", "runs",
                                           "commit"))
    try:
        out += renderer(data)
    except Exception as e:  # noqa: BLE001 - an odd file must not stop the page
        out += [f"(table not rendered: {type(e).__name__}: {e})", ""] + tables.generic(data)
    png = path.with_suffix(".png")
    if png.exists():
        out += [f"![{path.stem}](../benchmarks/results/{png.name})", ""]
    return out


def render(header: str) -> str:
    """docs/benchmarks.md, below ``header`` (the generator's do-not-edit line)."""
    files = sorted(RESULTS.glob("*.json"))
    dirty_out = _git("status", "--porcelain", "--untracked-files=all", "--",
                     RESULTS.relative_to(ROOT).as_posix())
    dirty = {line[3:].strip() for line in dirty_out.splitlines() if len(line) > 3}
    out = [header, "# Benchmarks\n",
           "Every script in `benchmarks/` prints a table and writes "
           "`benchmarks/results/<name>.json`; `--quick` runs a smaller version. Each section "
           "below is one result file: when and where it was measured and the command that "
           "reproduces it. Timings on shared machines are noisy; compare rows of one file, not "
           "across machines. Percentages are success rates with 95% intervals (Wilson for one "
           "method, paired bootstrap for differences to direct fine-tuning).\n"]
    by_script: dict[str, list[Path]] = {}
    for f in files:
        by_script.setdefault(_script_for(f.stem)[0], []).append(f)
    out.append("Contents: " + ", ".join(f"[{s}](#{s})" for s in sorted(by_script)) + "\n")
    for script in sorted(by_script):
        out.append(f"## {script}\n")
        for f in by_script[script]:
            out += _render_result(f, dirty)
    return "\n".join(out).rstrip() + "\n"

