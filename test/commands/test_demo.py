"""`ate-ros demo --tiny`: the whole pipeline (bags -> datasets -> VAEs -> policies -> closed-loop
evaluation -> ROS graph) runs end to end on small budgets and leaves every artefact behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    from ate_ros.core.sim.evaluate import wilson_interval

    proc = subprocess.run([sys.executable, "-m", "ate_ros.cli", "demo", "--tiny", "--out",
                           str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ATE demo summary" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    # Every stage left its artefact: bags, verified datasets, VAEs, three policies, evaluations.
    assert list((out / "bags").rglob("metadata.yaml")), "no rosbag2 bags recorded"
    for arm in ("sim_arm5", "sim_arm6", "sim_arm7"):
        manifest = json.loads((out / "data" / arm / "manifest.json").read_text())
        assert all(b["status"] == "ok" for b in manifest["bags"])
    for f in ("stage1.safetensors", "stage2.safetensors", "prior.safetensors", "config.json"):
        assert (out / "vae" / f).is_file(), f
    assert (out / "vision_encoder" / "vision_encoder.safetensors").is_file()
    pre_cfg = json.loads((out / "policy_pretrain" / "metrics.json").read_text())["summary"]
    assert pre_cfg["config"]["vision_init"] == str(out / "vision_encoder")
    assert pre_cfg["config"]["policy"]["instruction_keypoints"] is True
    assert pre_cfg["config"]["policy"]["goal_loss_weight"] == 1.0
    low = json.loads((out / "policy_pretrain_lowdim" / "config.json").read_text())["policy"]
    assert low["env_state_dim"] > 0 and low["camera_names"] == []
    assert low["action_mode"] == "relative"
    assert "ATE - direct =" in proc.stdout and "paired interval" in proc.stdout
    assert set(summary["results"]) == {"pretrained (zero-shot)", "direct fine-tuning", "ATE"}
    for per_task in summary["results"].values():
        for r in per_task.values():  # the reported rate and interval are those of the records
            k = sum(rec["success"] for rec in r["records"])
            assert r["successes"] == k and r["success_rate"] == k / r["episodes"]
            assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(k, r["episodes"]))
    ate = json.loads((out / "policy_ate" / "metrics.json").read_text())["summary"]
    direct = json.loads((out / "policy_direct" / "metrics.json").read_text())["summary"]
    assert ate["final/train/guidance/applied"] > 0, "ATE fine-tuning applied no guidance"
    assert direct.get("final/train/guidance/applied", 0) == 0
    ros = summary["ros"]
    assert ros is not None and ros["chunks"] > 0, ros


def test_demo_output_folder_is_replaced_only_when_it_is_a_demo(tmp_path: Path) -> None:
    from ate_ros.commands.demo import DEMO_MARKER, prepare_output_dir

    out = tmp_path / "demo_out"
    prepare_output_dir(out)
    (out / "bags").mkdir()
    (out / "bags" / "old.mcap").write_text("x")
    prepare_output_dir(out)  # a second `make demo`: the earlier artefacts go
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER]
    mine = tmp_path / "my_data"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="not an earlier demo"):
        prepare_output_dir(mine)
    assert (mine / "keep.txt").read_text() == "precious"


def test_demo_verdict_says_when_the_sample_is_too_small() -> None:
    from ate_ros.commands.demo import MIN_PAIRS, paired_verdict

    # A clear difference on few episodes: the interval excludes zero, n is below the threshold.
    few = paired_verdict([1] * 30, [0] * 30)
    assert "too small to conclude" in few and f"fewer than {MIN_PAIRS}" in few
    assert "includes zero" not in few
    # Many episodes, no difference: the interval spans zero.
    even = paired_verdict([1, 0] * MIN_PAIRS, [0, 1] * MIN_PAIRS)
    assert "too small to conclude" in even and "includes zero" in even
    assert "fewer than" not in even
    # Many episodes and a clear difference: a conclusion, either way round.
    assert "ATE is better" in paired_verdict([1] * MIN_PAIRS, [0] * MIN_PAIRS)
    worse = paired_verdict([0] * (MIN_PAIRS + 10), [1] * (MIN_PAIRS + 10))
    assert "direct fine-tuning is better" in worse and "too small" not in worse
