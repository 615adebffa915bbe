"""The adaptation benchmark's pooling of per-seed evaluations (no training: synthetic runs)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from support.paths import ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "adaptation_fixed_budget", ROOT / "benchmarks" / "adaptation_fixed_budget.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["adaptation_fixed_budget"] = mod  # dataclasses look their module up
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


def test_a_finished_run_is_reused_whatever_else_the_invocation_selects(bench, tmp_path,
                                                                       monkeypatch):
    """--ks / --seeds only choose runs: a finished K=25 run is reused by an invocation with other
    K values, and inference-time steering is evaluated on it once, not re-fine-tuned."""
    calls = {"finetune": 0, "evaluate": 0}

    def finetune(_cfg, _pretrained, _data, _vae, run_dir, _method, _seed):
        calls["finetune"] += 1
        run_dir.mkdir(parents=True)
        return {"curve": [], "action_mse": []}

    def evaluate(_out, _cfg, _seed, vae=None):
        calls["evaluate"] += 1
        return {"reach": {"successes": 1 if vae else 0, "episodes": 50, "nearer_target": None}}

    monkeypatch.setattr(bench, "finetune", finetune)
    monkeypatch.setattr(bench, "evaluate", evaluate)
    pretrained = tmp_path / "pre"
    pretrained.mkdir()
    (pretrained / "model.safetensors").write_bytes(b"weights")
    out = tmp_path / "k25_s0_ate"

    def run(**over):
        from dataclasses import asdict, replace

        cfg = replace(bench.BenchConfig(tasks=("reach",)), **over)
        return bench.run_one(asdict(cfg), pretrained, tmp_path, tmp_path, out, "ate", 0, 25, 1)

    run(ks=(10, 25, 50))
    assert calls == {"finetune": 1, "evaluate": 1}
    steered = run(ks=(25,), seeds=(0,), inference_steering=1.0)
    assert calls == {"finetune": 1, "evaluate": 2}  # the steered evaluation only
    assert steered["eval_inference_steering"]["reach"]["successes"] == 1
    run(ks=(10, 25, 50), inference_steering=1.0)  # already steered at 1.0
    run(ks=(10, 25, 50))  # a plain invocation reuses it as it is
    assert calls == {"finetune": 1, "evaluate": 2}
    run(ks=(10, 25, 50), steps=300)  # what a run computes changed: fine-tuned again
    assert calls == {"finetune": 2, "evaluate": 3}


def test_steering_scan_refuses_without_the_benchmark_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "scan_inference_steering", ROOT / "benchmarks" / "scan_inference_steering.py")
    scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scan)
    (tmp_path / "k10_s0_ate").mkdir()
    (tmp_path / "k10_s0_ate" / "config.json").write_text("{}")
    assert scan.main(["--work", str(tmp_path), "--ks", "10", "--seeds", "0",
                      "--methods", "ate,direct", "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "k10_s0_direct" in err and "vae_k10" in err and "k10_s0_ate," not in err
    assert not (tmp_path / "o.json").exists()
