"""Bags / our episodes -> LeRobotDataset v3 through LeRobot's writer; LeRobot's own
``LeRobotDataset`` loads and iterates the result with the recorded values."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lerobot")

from ate_ros.cli import main  # noqa: E402
from ate_ros.core.data.episode_format import episode_paths, read_episode  # noqa: E402
from ate_ros.core.data.lerobot_export import EXPORT_MANIFEST, export_lerobot  # noqa: E402
from ate_ros.core.data.policy_dataset import write_toy_dataset  # noqa: E402
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec  # noqa: E402
from ate_ros.core.lerobot_compat import require_lerobot  # noqa: E402

require_lerobot()
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

EMB = Embodiment(name="lr2", joints=[JointSpec(name=f"j{i}", slot=s, lower=-1.0, upper=1.0)
                                     for i, s in enumerate([0, 10])],
                 control_rate_hz=10.0, cameras=[CameraSpec(name="front", width=16, height=16)])


def test_export_loads_in_lerobot_with_our_values(tmp_path):
    src = write_toy_dataset(tmp_path / "ours", EMB, episodes=2, length=7, image_size=16,
                            val_episodes=1)
    out = export_lerobot(src, tmp_path / "lr")
    ds = LeRobotDataset("ate_ros/ours", root=out)
    assert ds.num_episodes == 3 and len(ds) == 21 and ds.fps == 10
    assert ds.meta.features["observation.state"]["names"] == ["j0", "j1"]
    eps = [read_episode(p) for s in ("train", "val") for p in episode_paths(src, s)]
    item = ds[7 + 3]  # episode 1, frame 3
    np.testing.assert_allclose(item["observation.state"].numpy(), eps[1].qpos[3], rtol=1e-6)
    np.testing.assert_allclose(item["action"].numpy(), eps[1].action[3], rtol=1e-6)
    img = item["observation.images.front"]  # (3, H, W) float in [0, 1]
    assert tuple(img.shape) == (3, 16, 16)
    np.testing.assert_allclose(img.permute(1, 2, 0).numpy() * 255, eps[1].images["front"][3],
                               atol=0.51)
    assert item["task"] == "reach the target"
    rec = json.loads((out / EXPORT_MANIFEST).read_text())
    assert rec["splits"] == {"train": [0, 1], "val": [2]} and rec["embodiment"] == "lr2"
    assert sum(1 for _ in ds) == 21
    with pytest.raises(FileExistsError):
        export_lerobot(src, out)


def test_bag2dataset_format_lerobot(tmp_path):
    from support.fixtures_bags import BagPlan, toy_embodiment, write_bag

    bags = [write_bag(tmp_path / f"b{i}", "mcap", BagPlan(duration_s=1.5)) for i in range(2)]
    emb = tmp_path / "toy.yaml"
    toy_embodiment().to_yaml(emb)
    base = ["bag2dataset", *map(str, bags), "--embodiment", str(emb), "--split", "0"]
    assert main(base + ["--out", str(tmp_path / "ate")]) == 0
    assert main(base + ["--out", str(tmp_path / "lr"), "--format", "lerobot"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    ds = LeRobotDataset("x/lr", root=tmp_path / "lr")
    ours = [read_episode(p) for p in episode_paths(tmp_path / "ate", "train")]
    assert ds.num_episodes == len(ours) and len(ds) == sum(len(e) for e in ours)
    np.testing.assert_allclose(ds[0]["observation.state"].numpy(), ours[0].qpos[0], rtol=1e-6)
    assert "observation.images.cam" in ds.meta.camera_keys
    assert (tmp_path / "lr" / "meta" / "manifest.json").is_file()
    assert main(base + ["--out", str(tmp_path / "lr"), "--format", "lerobot"]) == 2  # exists
