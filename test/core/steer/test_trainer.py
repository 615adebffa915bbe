"""`ate-ros pretrain` / `ate-ros steer` end to end on tiny generated data, with a real
`ate-ros align` output built through the align core API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ate_ros.cli import main
from ate_ros.core.data.policy_dataset import write_toy_dataset
from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.steer.policies import load_policy
from ate_ros.core.steer.trainer import FinetuneConfig, finetune_policy

POLICY_FLAGS = ["--image-size", "16", "--d-model", "32", "--layers", "1", "--chunk", "4",
                "--text-encoder", "hash", "--inference-steps", "3", "--batch-size", "8",
                "--no-progress", "--eval-samples", "8"]


def _emb(name, slots, lim):
    return Embodiment(name=name, joints=[JointSpec(name=f"{name}_j{i}", slot=s, lower=-lim,
                                                   upper=lim) for i, s in enumerate(slots)])


def _align(root, pre_dir, ada_dir, out, chunk=4):
    from ate_ros.core.align import AlignConfig, StageConfig, train_alignment

    st = StageConfig(epochs=1, batch_size=16, warmup_steps=1, patience=0)
    cfg = AlignConfig(out=str(out), pretrain=[str(pre_dir)],
                      embodiment_pre=[str(pre_dir / "embodiment.yaml")], adapt=str(ada_dir),
                      embodiment_ada=str(ada_dir / "embodiment.yaml"), preset="mlp",
                      chunk_size=chunk, vae_overrides={"latent_dim": 4, "mlp_hidden": 32},
                      stage1=st, stage2=st, control=False, plots=False, tensorboard=False,
                      progress=False, device="cpu")
    return train_alignment(cfg)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("steer")
    pre = write_toy_dataset(root / "pre", _emb("pre3", [0, 1, 2], 2.0), episodes=2, length=12,
                            image_size=16)
    ada = write_toy_dataset(root / "ada", _emb("ada2", [0, 10], 1.0), episodes=2, length=12,
                            image_size=16, seed=1)
    vae = _align(root, pre, ada, root / "vae")
    rc = main(["pretrain", "--data", str(pre), "--out", str(root / "pol"), "--steps", "6",
               "--eval-every", "3", "--save-every", "3", *POLICY_FLAGS])
    assert rc == 0
    return {"root": root, "pre": pre, "ada": ada, "vae": vae, "pol": root / "pol"}


def test_pretrain_outputs(world):
    pol = world["pol"]
    for f in ("model.safetensors", "config.json", "metrics.json",
              "checkpoint/optimizer.safetensors"):
        assert (pol / f).is_file(), f
    m = json.loads((pol / "metrics.json").read_text())
    assert "eval/action_mse" in m["history"] and m["summary"]["steps"] == 6
    p = load_policy(pol)
    assert p.embodiment_names == ["pre3"]
    assert list((pol / "tensorboard").iterdir())


@pytest.mark.parametrize("guidance", ["on", "off"])
def test_steer_cli(world, guidance):
    out = world["root"] / f"ft_{guidance}"
    args = ["steer", "--policy", str(world["pol"]), "--data", str(world["ada"]), "--out",
            str(out), "--steps", "4", "--eval-every", "2", "--batch-size", "8", "--no-progress",
            "--eval-samples", "8", "--guidance", guidance]
    if guidance == "on":
        args += ["--vae", str(world["vae"]), "--lambda", "2.0", "--clamp", "0.1"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [s for s, _ in m["history"]["eval/action_mse"]] == [2, 4]
    if guidance == "on":
        assert m["history"]["train/guidance/applied"][0][1] > 0
    else:
        assert not any(k.startswith("train/guidance") for k in m["history"])
    p = load_policy(out)
    assert set(p.embodiment_names) == {"pre3", "ada2"}
    mask = np.zeros(128, bool)
    mask[[0, 10]] = True
    from ate_ros.core.policy_contract import PolicyObservation

    obs = PolicyObservation(images={"front": np.zeros((16, 16, 3), np.uint8)},
                            qpos=np.zeros(128), mask=mask, instruction="reach the target")
    c = p.predict_chunk(obs, seed=0)
    assert c.shape == (4, 128) and np.all(c[:, ~mask] == 0)


def test_steer_resume_continues(world):
    out = world["root"] / "ft_resume"
    base = dict(data=[str(world["ada"])], out=str(out), policy_path=str(world["pol"]),
                vae=str(world["vae"]), batch_size=8, eval_every=100, save_every=2,
                show_progress=False, eval_samples=4)
    finetune_policy(FinetuneConfig(steps=2, **base))
    finetune_policy(FinetuneConfig(steps=4, resume=True, **base))
    m = json.loads((out / "metrics.json").read_text())
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 4 and m["summary"]["steps"] == 4


def test_caller_stopping_rule_and_stage1_guidance(world):
    """finetune_policy's on_eval hook sees every evaluation and ends training when it says so
    (the weights of that step are saved, not an earlier best); guidance through the stage-1
    encoder (bench_adaptation's ate_stage1) trains as stage 2 does."""
    from ate_ros.core.steer.guidance import GuidanceConfig

    seen = []

    def on_eval(step, policy):
        seen.append((step, policy.training))
        return step == 4

    out = world["root"] / "ft_hook"
    finetune_policy(FinetuneConfig(
        data=[str(world["ada"])], out=str(out), policy_path=str(world["pol"]),
        vae=str(world["vae"]), batch_size=8, steps=10, eval_every=2, save_every=100, log_every=2,
        show_progress=False, eval_samples=4, guidance=GuidanceConfig(encoder_stage=1)),
        on_eval=on_eval)
    assert [s for s, _ in seen] == [2, 4]
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["steps"] == 4 and "best_step" not in m["summary"]
    assert m["history"]["train/guidance/applied"][0][1] > 0
    assert json.loads((out / "config.json").read_text())["training"]["guidance"][
        "encoder_stage"] == 1
    with pytest.raises(ValueError, match="encoder_stage"):
        GuidanceConfig(encoder_stage=3)


def test_steer_bad_inputs_fail_before_training(world, capsys):
    common = ["steer", "--policy", str(world["pol"]), "--out", str(world["root"] / "bad"),
              "--steps", "2", "--no-progress"]
    # guidance without a VAE
    assert main(common + ["--data", str(world["ada"])]) == 2
    assert "--vae" in capsys.readouterr().err
    # VAE aligned on another robot (mask mismatch)
    other = write_toy_dataset(world["root"] / "other", _emb("oth2", [0, 11], 1.0), episodes=2,
                              length=12, image_size=16)
    assert main(common + ["--data", str(other), "--vae", str(world["vae"])]) == 2
    assert "does not match embodiment" in capsys.readouterr().err
    # VAE chunk longer than the policy chunk
    long_vae = _align(world["root"], world["pre"], world["ada"], world["root"] / "vae8", chunk=8)
    assert main(common + ["--data", str(world["ada"]), "--vae", str(long_vae)]) == 2
    assert "exceeds the policy chunk" in capsys.readouterr().err
    # not a VAE / not a policy
    assert main(common + ["--data", str(world["ada"]), "--vae", str(world["pol"])]) != 0
    assert main(["steer", "--policy", str(world["vae"]), "--data", str(world["ada"]), "--out",
                 str(world["root"] / "bad2"), "--guidance", "off", "--no-progress"]) == 2
    assert not (world["root"] / "bad" / "model.safetensors").exists()


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_steer_under_ddp_launchers(world, tmp_path, launcher):
    """Guided fine-tuning as two DDP processes (torchrun, or ``accelerate launch``, which sets
    the same environment; gloo on CPU): both ranks join the process group, nobody hangs
    (evaluation and saving run on rank 0 only) and the output is a loadable policy."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which(launcher, path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip(f"{launcher} not installed next to this Python")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if launcher == "torchrun":
        prefix = [exe, "--standalone", "--nproc-per-node", "2"]
    else:
        # Its multi-GPU launcher is torch.distributed.run; our --device cpu picks gloo (its
        # own multi-CPU mode needs mpirun).
        prefix = [exe, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                  "0"]
    cmd = [*prefix, "-m", "ate_ros.cli", "steer",
           "--policy", str(world["pol"]), "--data", str(world["ada"]), "--vae",
           str(world["vae"]), "--out", str(out), "--steps", "4", "--eval-every", "4",
           "--batch-size", "4", "--no-progress", "--eval-samples", "8", "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["world_size"] == 2 and summary["steps"] == 4
    load_policy(out)
    log = r.stdout + r.stderr
    assert "DDP: rank 0/2" in log and "DDP: rank 1/2" in log, log[-3000:]
