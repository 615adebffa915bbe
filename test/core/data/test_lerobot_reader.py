"""``ate-ros align`` from a LeRobotDataset: one recorded bag set converted to both formats gives
the same chunks, align trains on the LeRobot one (embodiment and split read from the dataset),
and bad LeRobot inputs fail with messages that say what to change."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("lerobot")
pytestmark = pytest.mark.slow

from ate_ros.cli import main  # noqa: E402
from ate_ros.core.data.chunks import ChunkSource, load_chunks  # noqa: E402
from ate_ros.core.data.lerobot_reader import (  # noqa: E402
    embodiment_spec,
    is_lerobot_dataset,
    load_lerobot_arrays,
    splits,
)
from ate_ros.core.embodiment import EmbodimentError, load_embodiment  # noqa: E402
from ate_ros.core.training.files import read_json  # noqa: E402

FAST = ["--preset", "mlp", "--latent-dim", "4", "--chunk", "4", "--epochs-stage1", "2",
        "--epochs-stage2", "2", "--batch-size", "16", "--device", "cpu", "--no-progress",
        "--no-plots", "--no-control"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three recorded bags (toy3 robot) converted to our format and to a LeRobotDataset, and a
    pre-training dataset of another robot."""
    from support.fixtures_bags import BagPlan, toy_embodiment, write_bag

    from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset

    root = tmp_path_factory.mktemp("lerobot_align")
    bags = [write_bag(root / f"b{i}", "mcap", BagPlan(duration_s=2.0)) for i in range(3)]
    emb = root / "toy3.yaml"
    toy_embodiment().to_yaml(emb)
    base = ["bag2dataset", *map(str, bags), "--embodiment", str(emb), "--split", "0.34"]
    assert main([*base, "--out", str(root / "ate")]) == 0
    assert main([*base, "--out", str(root / "lr"), "--format", "lerobot"]) == 0
    pre = toy_arm("arm4", 4)
    write_toy_dataset(root / "pre", pre, n_train=3, n_val=1, length=20, seed=0)
    pre.to_yaml(root / "arm4.yaml")
    return root


def test_same_chunks_from_both_formats(world):
    emb = load_embodiment(world / "toy3.yaml")
    assert is_lerobot_dataset(world / "lr") and not is_lerobot_dataset(world / "ate")
    assert embodiment_spec(world / "lr") == str(world / "lr" / "embodiment.yaml")
    for split in ("train", "val"):
        ours = load_chunks([ChunkSource(world / "ate", emb)], split, 4)
        lr = load_chunks([ChunkSource(f"lerobot:{world / 'lr'}", emb)], split, 4)
        assert lr.keys == ["action"] and len(lr) > 0
        np.testing.assert_array_equal(lr.chunks, ours.chunks)
        np.testing.assert_array_equal(lr.source, ours.source)
    q_ours = load_chunks([ChunkSource(world / "ate", emb)], "train", 4, key="qpos")
    q_lr = load_chunks([ChunkSource(world / "lr", emb)], "train", 4, key="qpos")
    np.testing.assert_array_equal(q_lr.chunks, q_ours.chunks)


def test_align_trains_from_a_lerobot_dataset(world, capsys):
    out = world / "align"
    # No --embodiment-ada: the LeRobotDataset carries its embodiment.
    rc = main(["align", "--pretrain", str(world / "pre"), "--embodiment-pre",
               str(world / "arm4.yaml"), "--adapt", f"lerobot:{world / 'lr'}",
               "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr()
    for name in ("stage1.safetensors", "stage2.safetensors", "prior.safetensors", "config.json",
                 "metrics.json"):
        assert (out / name).is_file(), name
    summary = read_json(out / "metrics.json")["summary"]
    assert np.isfinite(summary["stage2"]["best_val_loss"])
    assert np.isfinite(summary["stage1"]["best_val_loss"])
    assert np.isfinite(summary["quality"]["stage2"]["recon_mae"])
    assert read_json(out / "config.json")["mask"] == [0, 1, 2]  # toy3's slots

    from ate_ros.core.align import load_alignment

    assert load_alignment(out).embodiment_ada.name == "toy3"


def test_lerobot_pretraining_datasets_need_no_embodiment(world):
    from ate_ros.core.align import AlignConfig

    cfg = AlignConfig(out=str(world / "unused"), pretrain=[str(world / "lr")],
                      adapt=f"lerobot:{world / 'lr'}")
    assert cfg.embodiment_pre == [str(world / "lr" / "embodiment.yaml")]
    assert cfg.embodiment_ada == str(world / "lr" / "embodiment.yaml")


def test_bad_lerobot_inputs_are_named(world, tmp_path, capsys):
    common = ["--pretrain", str(world / "pre"), "--embodiment-pre", str(world / "arm4.yaml"),
              "--out", str(tmp_path / "out"), *FAST]
    assert main(["align", "--adapt", f"lerobot:{tmp_path / 'missing'}", *common]) == 2
    assert "not found" in capsys.readouterr().err
    # The dataset's actions are toy3's j0..j2, not arm4's four joints.
    assert main(["align", "--adapt", str(world / "lr"), "--embodiment-ada",
                 str(world / "arm4.yaml"), *common]) == 2
    err = capsys.readouterr().err
    assert "'action' has 3 columns" in err and "4 joints" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["align", "--adapt", f"lerobot:{empty}", *common]) == 2
    assert "no meta/info.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_foreign_lerobot_dataset_split_and_names(world, tmp_path):
    """A LeRobotDataset not written by us: no split record, no embodiment.yaml, other names."""
    emb = load_embodiment(world / "toy3.yaml")
    foreign = tmp_path / "foreign"
    shutil.copytree(world / "lr", foreign)
    (foreign / "meta" / "ate_ros_export.json").unlink()
    (foreign / "embodiment.yaml").unlink()
    total = json.loads((foreign / "meta" / "info.json").read_text())["total_episodes"]
    got = splits(foreign, total)
    assert got["val"] == [total - 1] and got["train"] == list(range(total - 1))
    with pytest.raises(EmbodimentError, match="robot_type 'toy3'"):
        embodiment_spec(foreign)
    # Columns in another order are put back in the embodiment's order by name.
    info = json.loads((foreign / "meta" / "info.json").read_text())
    ref, _, _ = load_lerobot_arrays(foreign, emb, "train")
    info["features"]["action"]["names"] = ["j1", "j2", "j0"]
    (foreign / "meta" / "info.json").write_text(json.dumps(info))
    shuffled, _, _ = load_lerobot_arrays(foreign, emb, "train")
    np.testing.assert_array_equal(shuffled[0], ref[0][:, [2, 0, 1]])
    info["features"]["action"]["names"] = ["a", "b", "c"]
    (foreign / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="must be the embodiment's joints"):
        load_lerobot_arrays(foreign, emb, "train")
