"""The adaptation benchmark's pooling of per-seed evaluations (no training: synthetic runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_adaptation",
                                                  ROOT / "benchmarks" / "bench_adaptation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_adaptation"] = mod  # dataclasses look their module up while defining
    spec.loader.exec_module(mod)
    return mod


def _run(method, seed, reach, pick, nearer, curve):
    return {"k": 10, "seed": seed, "method": method, "curve": curve,
            "action_mse": [[600, 0.05 + seed * 0.01]],
            "eval": {"reach": {"successes": reach, "episodes": 50, "nearer_target": None},
                     "pick_color": {"successes": pick, "episodes": 50,
                                    "nearer_target": nearer}}}


def test_pooling_success_named_object_and_steps_to_direct(bench, capsys):
    cfg = bench.BenchConfig(ks=(10,), seeds=(0, 1), tasks=("reach", "pick_color"))
    runs = [_run("direct", 0, 2, 4, 30, [[150, 0.0], [600, 0.1]]),
            _run("direct", 1, 0, 6, 34, [[150, 0.0], [600, 0.1]]),
            _run("ate", 0, 3, 8, 40, [[150, 0.1], [600, 0.2]]),
            _run("ate", 1, 1, 10, 42, [[150, 0.2], [600, 0.2]])]
    table = bench.aggregate(runs, cfg)
    direct, ate = table["K=10/direct"], table["K=10/ate"]
    assert direct["success"] == pytest.approx(12 / 200) and direct["n"] == 200
    assert ate["per_task"] == {"reach": pytest.approx(4 / 100), "pick_color": 18 / 100}
    assert direct["nearer_named"] == pytest.approx(64 / 100)  # pick_color only
    assert ate["nearer_named"] == pytest.approx(82 / 100)
    assert ate["steps_to_direct_final"] == 150  # the mean curve reaches 0.1 at step 150
    assert direct["val_action_mse"] == pytest.approx(0.055)
    bench.print_table(table, cfg, None)
    out = capsys.readouterr().out
    assert "named obj." in out and "82%" in out and "64%" in out
    # Runs saved before the field existed pool to "no named-object figure".
    for r in runs:
        for t in r["eval"].values():
            t.pop("nearer_target")
    assert bench.aggregate(runs, cfg)["K=10/ate"]["nearer_named"] is None
