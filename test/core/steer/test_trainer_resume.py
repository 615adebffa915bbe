"""Guarded training outputs and ``ate-ros steer --resume`` (#29): a run interrupted after a
checkpoint carries on to exactly the weights of a run never interrupted; ``--out`` never
overwrites a policy, an input or a checkpoint without ``--resume``/``--overwrite``; a mismatched
resume names the differing settings and writes nothing; outputs follow the umask."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from support.tiny_policy import toy_embodiment

from ate_ros.cli import main
from ate_ros.core.data.policy_dataset import write_toy_dataset
from ate_ros.core.embodiment import Embodiment
from ate_ros.core.steer.trainer import RUN_FILE
from ate_ros.core.training.files import load_tensors
from ate_ros.core.training.loop import Optimization
from ate_ros.core.training.output_guard import resume_dir

RUN = ["--batch-size", "4", "--no-progress", "--eval-samples", "4", "--device", "cpu"]
FLAGS = ["--image-size", "16", "--d-model", "32", "--layers", "1", "--chunk", "4",
         "--text-encoder", "hash", "--inference-steps", "2", *RUN]


def _emb(name: str, slots: list[int]) -> Embodiment:
    return toy_embodiment(name, slots, lim=1.0, joint_prefix=f"{name}_")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer_resume")
    pre = write_toy_dataset(root / "pre", _emb("pre3", [0, 1, 2]), episodes=2, length=10,
                            image_size=16)
    ada = write_toy_dataset(root / "ada", _emb("ada2", [0, 10]), episodes=2, length=10,
                            image_size=16, seed=1)
    assert main(["pretrain", "--data", str(pre), "--out", str(root / "pol"), "--steps", "3",
                 "--eval-every", "3", *FLAGS]) == 0
    return root, pre, ada


def _steer(world, out, *extra):
    root, _, ada = world
    return ["steer", "--policy", str(root / "pol"), "--data", str(ada), "--out", str(out),
            "--guidance", "off", "--steps", "6", "--save-every", "2", "--eval-every", "3",
            "--seed", "3", *RUN, *extra]


def _interrupt_at_step(monkeypatch, n):
    real, calls = Optimization.step, [0]

    def step(self, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Optimization, "step", step)


def _same(a, b):
    for name in ("model.safetensors", "checkpoint/model.safetensors",
                 "checkpoint/ema.safetensors", "checkpoint/optimizer.safetensors"):
        x, y = load_tensors(a / name), load_tensors(b / name)
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, msg=f"{name}: {k}")


def test_resumed_steer_equals_an_uninterrupted_one(world, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "ref"
    assert main(_steer(world, ref)) == 0
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at_step(m, 5)  # after the checkpoint at step 4
        assert main(_steer(world, out)) == 130
    err = capsys.readouterr().err
    assert str(resume_dir(out)) in err and "--resume" in err and "ate-ros steer" in err, err
    assert not out.exists() and resume_dir(out).is_dir()
    # without --resume: refused, the checkpoint kept
    assert main(_steer(world, out)) == 2
    assert "pass --resume" in capsys.readouterr().err
    # other settings: refused, naming them
    assert main(_steer(world, out, "--resume", "--lr", "3e-4", "--batch-size", "2")) == 2
    err = capsys.readouterr().err
    assert "lr: 0.0001 then, 0.0003 now" in err and "batch_size" in err, err
    assert main(_steer(world, out, "--resume")) == 0
    _same(ref, out)


def test_resume_refusals_and_identity(world, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "ref"
    assert main(_steer(world, ref)) == 0
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at_step(m, 5)
        assert main(_steer(world, out)) == 130
    capsys.readouterr()
    args = _steer(world, out, "--resume")
    low = [*args]
    low[low.index("--steps") + 1] = "4"
    before = {p: p.stat().st_mtime_ns for p in resume_dir(out).rglob("*")}
    assert main(low) == 2
    assert "already at step 4" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in resume_dir(out).rglob("*")} == before
    assert not out.exists()
    # Settings saved before a field existed (TrainConfig.key): a run.json without it. Missing
    # stands for the default ("auto", as this run's), so only another value is refused.
    run_file = resume_dir(out) / RUN_FILE
    saved = json.loads(run_file.read_text())
    assert saved["settings"]["key"] == "auto"
    saved["settings"]["key"] = "qpos"
    run_file.write_text(json.dumps(saved))
    assert main(args) == 2
    assert "key: 'qpos' then, 'auto' now" in capsys.readouterr().err
    del saved["settings"]["key"]
    run_file.write_text(json.dumps(saved))
    assert main(args) == 0
    assert out.is_dir() and not resume_dir(out).exists()
    _same(ref, out)


def test_out_guards(world, tmp_path, capsys):
    root, pre, ada = world
    done = tmp_path / "done"
    assert main(_steer(world, done, "--steps", "2")) == 0
    before = load_tensors(done / "model.safetensors")
    for target, words in ((root / "pol", "input"), (done, "already holds a trained policy"),
                          (ada, "input")):
        assert main(_steer(world, target, "--steps", "2")) == 2
        assert words in capsys.readouterr().err
    assert main(_steer(world, done, "--steps", "2", "--seed", "9", "--overwrite")) == 0
    after = load_tensors(done / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(_steer(world, afile, "--steps", "2")) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"
    # align refuses a file, and a folder holding a policy, before reading anything
    assert main(["align", "--pretrain", str(pre), "--embodiment-pre",
                 str(pre / "embodiment.yaml"), "--adapt", str(ada), "--embodiment-ada",
                 str(ada / "embodiment.yaml"), "--out", str(done)]) == 2
    assert "already holds a trained policy" in capsys.readouterr().err
    assert main(["pretrain-vision", "--out", str(afile), "--frames", "0"]) == 2
    assert afile.read_text() == "x"


def test_outputs_follow_the_umask(world, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "pub"
        assert main(_steer(world, out, "--steps", "2")) == 0
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    bad = {str(p): oct(m) for p, m in modes.items()
           if m != (0o755 if p.is_dir() else 0o644)}
    assert not bad, bad
