"""The ``meta`` record every benchmark result file carries: when, where, which code, which command.

    from result_meta import result_meta
    result = {"benchmark": "x", "meta": result_meta(), ...}

``machine`` names the CPU model and core count, the GPU (``none`` without CUDA, or when torch is
not imported by the benchmark) and the load average at the start, since timings on a shared
machine depend on it. ``commit`` is the worktree's HEAD, with ``-dirty`` when tracked files
differ from it.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    """The CUDA device torch sees, ``none`` without one (torch is only asked when imported)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return "none"
    return torch.cuda.get_device_name(0)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def result_meta(argv: list[str] | None = None) -> dict[str, Any]:
    """Date (UTC), machine, commit and the command line of this run."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    args = sys.argv if argv is None else argv
    script = Path(args[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_name(),
                    "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": load_average()},
        "commit": commit or "unknown",
        "command": shlex.join(["python", str(script), *args[1:]]),
    }
