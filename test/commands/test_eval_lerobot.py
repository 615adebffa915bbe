"""``ate-ros eval --policy lerobot:<dir>``: a LeRobot DiffusionPolicy checkpoint closed loop in
MuJoCo through the executor's scheduler (untrained: success may be 0; it must run and report),
and the command's clear errors for checkpoints that do not fit."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lerobot")
pytest.importorskip("mujoco")
pytestmark = pytest.mark.slow

from ate_ros.cli import main  # noqa: E402
from ate_ros.core.embodiment import load_embodiment  # noqa: E402
from ate_ros.core.sim.evaluate import wilson_interval  # noqa: E402

EMBODIMENT = "sim_arm7"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from support.lerobot_fixtures import tiny_diffusion_checkpoint

    return tiny_diffusion_checkpoint(tmp_path_factory.mktemp("lreval") / "dp",
                                     load_embodiment(EMBODIMENT))


def test_eval_lerobot_checkpoint_closed_loop(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--policy", f"lerobot:{checkpoint}", "--embodiment", EMBODIMENT,
               "--task", "reach", "--episodes", "2", "--seed", "1", "--out", str(out),
               "--render-episodes", "1", "--num-steps", "2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["episodes"] == 2 and res["embodiment"] == EMBODIMENT and res["task"] == "reach"
    k = sum(rec["success"] for rec in res["records"])
    assert res["successes"] == k and res["success_rate"] == k / 2
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(wilson_interval(k, 2))
    for rec in res["records"]:
        assert rec["chunks"] > 0 and rec["steps"] > 0
    # Every point of a 4-point chunk runs before the next chunk (select_action's behaviour).
    assert all(r["steps"] <= 4 * r["chunks"] + 4 for r in res["records"])
    assert res["execution"]["commands"] > 0
    assert len(res["renders"]) == 1
    assert "success" in capsys.readouterr().out


def test_eval_reports_bad_lerobot_inputs(checkpoint, tmp_path, capsys):
    args = ["eval", "--task", "reach", "--episodes", "1", "--out", str(tmp_path / "x")]
    assert main([*args, "--policy", f"lerobot:{tmp_path / 'none'}",
                 "--embodiment", EMBODIMENT]) == 2
    assert "not found" in capsys.readouterr().err
    # sim_arm6 has 6 joints, the checkpoint acts on 7.
    assert main([*args, "--policy", f"lerobot:{checkpoint}", "--embodiment", "sim_arm6"]) == 2
    assert "7 dims" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_chunking_rtc_runs_lerobots_rtc_or_refuses(checkpoint, tmp_path, capsys,
                                                        monkeypatch):
    """``--chunking rtc --inference-delay 2``: a SmolVLA checkpoint (tiny, random, offline) runs
    closed loop with LeRobot's RTC turned on; the DiffusionPolicy, which has no RTC in LeRobot,
    exits 2 naming the reason."""
    pytest.importorskip("num2words")
    from support.lerobot_fixtures import tiny_smolvla_checkpoint

    from ate_ros.core.lerobot_compat import require_lerobot

    require_lerobot()  # lerobot.policies imports past its GR00T package
    from lerobot.policies.rtc.modeling_rtc import RTCProcessor

    smolvla = tiny_smolvla_checkpoint(tmp_path / "smolvla", load_embodiment(EMBODIMENT))
    delays: list[int] = []  # LeRobot's own guided steps, observed
    step = RTCProcessor.denoise_step

    def observed(self, x_t, prev_chunk_left_over, inference_delay, *a, **kw):
        if prev_chunk_left_over is not None:
            delays.append(inference_delay)
        return step(self, x_t, prev_chunk_left_over, inference_delay, *a, **kw)

    monkeypatch.setattr(RTCProcessor, "denoise_step", observed)
    out = tmp_path / "eval"
    args = ["eval", "--embodiment", EMBODIMENT, "--task", "reach", "--episodes", "1",
            "--seed", "1", "--chunking", "rtc", "--inference-delay", "2"]
    assert main([*args, "--policy", f"lerobot:{smolvla}", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["episodes"] == 1 and res["records"][0]["chunks"] >= 2
    assert delays and set(delays) == {2}  # every chunk after the first: prefix, delay D
    assert main([*args, "--policy", f"lerobot:{checkpoint}", "--out", str(tmp_path / "x")]) == 2
    assert "--chunking rtc needs a policy that takes a committed prefix" in capsys.readouterr().err
