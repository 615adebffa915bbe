"""benchmarks/bench_own_arm.py: the cells it evaluates and what its result file records."""

from __future__ import annotations

import importlib.util
import json

from support.paths import ROOT


def test_own_arm_evaluates_the_arms_asked_for_and_records_the_command(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_own_arm",
                                                  ROOT / "benchmarks" / "bench_own_arm.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "own.json"
    argv = ["--policy", str(ROOT / "assets" / "pretrained_lowdim"), "--arms", "sim_arm7",
            "--tasks", "reach", "--episodes", "1", "--jobs", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert [(r["arm"], r["task"], r["episodes"]) for r in res["rows"]] == [("sim_arm7", "reach",
                                                                            1)]
    assert res["command"] == "python benchmarks/bench_own_arm.py " + " ".join(argv)
