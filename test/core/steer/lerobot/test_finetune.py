"""`ate-ros steer --policy lerobot:<dir>` on a tiny DiffusionPolicy built from its config (no
pretrained backbone), guided and unguided, saved in LeRobot's format and reloaded by LeRobot."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lerobot")

from ate_ros.cli import main  # noqa: E402
from ate_ros.core.data.lerobot_export import export_lerobot  # noqa: E402
from ate_ros.core.data.policy_dataset import write_toy_dataset  # noqa: E402
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.lerobot_compat import require_lerobot  # noqa: E402

require_lerobot()
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata  # noqa: E402
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402
from lerobot.policies.pretrained import PreTrainedPolicy  # noqa: E402
from support.lerobot_fixtures import tiny_diffusion_config  # noqa: E402


def _emb(name, slots, lim, camera=True):
    return Embodiment(name=name, joints=[JointSpec(name=f"{name}_j{i}", slot=s, lower=-lim,
                                                   upper=lim) for i, s in enumerate(slots)],
                      control_rate_hz=10.0,
                      cameras=[CameraSpec(name="front", width=16, height=16)] if camera else [])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from support.lerobot_fixtures import tiny_alignment

    root = tmp_path_factory.mktemp("lrsteer")
    pre = write_toy_dataset(root / "pre", _emb("pre3", [0, 1, 10], 2.0), episodes=2, length=12,
                            image_size=16)
    ada_emb = _emb("ada2", [0, 10], 1.0)
    ada = write_toy_dataset(root / "ada", ada_emb, episodes=2, length=12, image_size=16, seed=1)
    vae = tiny_alignment(root / "vae", pre, ada)
    lr_data = export_lerobot(ada, root / "ada_lerobot")
    torch.manual_seed(0)
    cfg = tiny_diffusion_config(ada_emb.dof)
    policy = DiffusionPolicy(cfg)
    stats = LeRobotDatasetMetadata("ate_ros/ada", root=lr_data).stats
    pre_p, post_p = make_pre_post_processors(cfg, dataset_stats=stats)
    base = root / "base"
    policy.save_pretrained(base)
    pre_p.save_pretrained(base)
    post_p.save_pretrained(base)
    return {"root": root, "ada": ada, "lr_data": lr_data, "vae": vae, "base": base}


@pytest.mark.parametrize("guidance", ["on", "off"])
def test_steer_lerobot_checkpoint_round_trip(world, guidance):
    out = world["root"] / f"ft_{guidance}"
    args = ["steer", "--policy", f"lerobot:{world['base']}", "--data", str(world["lr_data"]),
            "--out", str(out), "--steps", "3", "--batch-size", "4", "--log-every", "1",
            "--lr", "1e-3", "--device", "cpu", "--guidance", guidance]
    if guidance == "on":
        args += ["--vae", str(world["vae"]), "--lambda", "2.0"]
    assert main(args) == 0
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert [s for s, _ in hist["train/loss"]] == [1, 2, 3]
    if guidance == "on":
        assert all(v == 4 for _, v in hist["train/guidance/applied"])
        assert hist["train/guidance/term_rms"][0][1] > 0
    else:
        assert not any(k.startswith("train/guidance") for k in hist)
    base = DiffusionPolicy.from_pretrained(world["base"])
    tuned = DiffusionPolicy.from_pretrained(out)  # PreTrainedPolicy.from_pretrained
    assert isinstance(tuned, PreTrainedPolicy)
    changed = [k for k, v in tuned.state_dict().items()
               if not torch.equal(v, base.state_dict()[k])]
    assert changed  # the fine-tuned weights were saved
    pre_p, post_p = make_pre_post_processors(tuned.config, pretrained_path=str(out))
    assert len(pre_p.steps) == len(make_pre_post_processors(base.config,
                                                            pretrained_path=str(
                                                                world["base"]))[0].steps)


def test_steer_lerobot_from_our_episode_format(world):
    out = world["root"] / "ft_ours"
    assert main(["steer", "--policy", f"lerobot:{world['base']}", "--data", str(world["ada"]),
                 "--out", str(out), "--steps", "1", "--batch-size", "2", "--device", "cpu",
                 "--guidance", "off"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


def test_steer_lerobot_refuses_guidance_without_vae(world, capsys):
    rc = main(["steer", "--policy", f"lerobot:{world['base']}", "--data", str(world["lr_data"]),
               "--out", str(world["root"] / "x"), "--steps", "1", "--guidance", "on"])
    assert rc == 2 and "--vae" in capsys.readouterr().err
