"""`ate-ros run --sim`: the command brings the one-process graph (:mod:`ate_ros.nodes.graph`) up,
runs a lock-step episode of the scripted expert, and prints and writes its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_lockstep_expert_episode_prints_and_writes_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ate_ros.cli", "run", "--sim", "--lockstep", "--policy", "expert",
         "--embodiment", "sim_arm7", "--task", "reach", "--duration", "1.5", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ate-ros run summary" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["policy"] == "expert" and summary["embodiment"] == "sim_arm7"
    # Lock-step: the episode ran its sim time (or ended early on success), chunk by chunk.
    assert 0.0 < summary["sim_time_s"] <= 1.5 + 1e-6
    assert summary["chunks"] >= 1 and summary["stale_observations_refused"] == 0
    assert summary["success"] or summary["sim_time_s"] == pytest.approx(1.5, abs=0.11)
