"""benchmarks/bench_rtc.py end to end on a tiny grid (loaded by path, one process): the result
file has issue 30's row fields, the meta record of result_meta and the PNG; the targets read the
rows; the fine-tuned modes need their policies."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from support.paths import ROOT

pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rtc", ROOT / "benchmarks" /
                                                  "bench_rtc.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_rtc"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_writes_rows_meta_and_plot(bench, tmp_path):
    out = tmp_path / "rtc.json"
    assert bench.main(["--modes", "replace,rtc", "--delays", "4", "--arms", "sim_arm6",
                       "--tasks", "reach", "--seeds", "1", "--episodes", "1", "--jobs", "1",
                       "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {"date", "machine", "commit", "command"} <= set(data["meta"])
    assert data["meta"]["machine"]["cores"] >= 1
    assert "bench_rtc.py --modes replace,rtc" in data["meta"]["command"]
    rows = data["rows"]
    assert [(r["mode"], r["delay"]) for r in rows] == [("replace", 4), ("rtc", 4)]
    for r in rows:
        assert {"mode", "delay", "success_rate", "switch_velocity_jump", "rms_jerk",
                "completion_time_s"} <= set(r)
        assert r["episodes"] == 1 and 0.0 <= r["success_rate"] <= 1.0
    assert out.with_suffix(".png").stat().st_size > 0
    assert any(t.startswith("rtc switch velocity jump / replace's at D=4")
               for t in data["targets"])


def test_fine_tuned_modes_need_their_policies(bench, capsys):
    assert bench.main(["--modes", "rtc_trained", "--arms", "sim_arm6"]) == 2
    assert "needs --train-rtc DIR or --trained-policy DIR" in capsys.readouterr().err
    assert set(bench.TRAINED) < set(bench.MODES)
