"""bag2dataset_probe: the breakdown bench_bag2dataset prints, from a real 2-worker run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.fixtures_bags import BagPlan, toy_embodiment, write_bag
from support.paths import ROOT


def test_probe_accounts_for_every_bag_worker_and_phase(tmp_path):
    bags = [write_bag(tmp_path / f"b{i}", "mcap", BagPlan(duration_s=1.0)) for i in range(4)]
    emb = tmp_path / "toy.yaml"
    toy_embodiment().to_yaml(emb)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bag2dataset_probe.py"), *map(str, bags),
         "--embodiment", str(emb), "--out", str(tmp_path / "out"), "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["start_method"] == "fork"
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert sorted(res["phases_s"]) == sorted([
        "interpreter_and_imports", "main_before_pool", "pool_startup", "bags", "pool_tail",
        "main_after_pool"])
    assert all(v >= 0 for v in res["phases_s"].values())
    assert len(res["bag_seconds"]) == 4
    assert len(res["workers"]) == 2 and sum(w["bags"] for w in res["workers"]) == 4
    # the stages (without their ".x" parts, and with "other") add up to the bags' busy time
    busy = sum(w["busy_s"] for w in res["workers"])
    top = sum(v for k, v in res["stages_s"].items() if "." not in k)
    assert abs(top - busy) < 0.01 and res["stages_s"]["read"] > 0
    assert res["stages_s"]["write.hdf5"] + res["stages_s"]["write.sha256"] \
        <= res["stages_s"]["write"] + 1e-3
