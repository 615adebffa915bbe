"""Image-encoder pre-training: sim labels, learning, save/load into a policy, the CLI path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ate_ros.cli import main
from ate_ros.core.sim.labelled_frames import render_labelled_frames
from ate_ros.core.sim.object_labels import (
    COLOR_NAMES,
    LABEL_DIM,
    LABEL_NAMES,
    label_weights,
    scene_labels,
)
from ate_ros.core.steer.policies import VLAConfig, VLAPolicy, load_policy
from ate_ros.core.steer.policies.vision_pretrain import (
    VisionEncoderSpec,
    load_vision_encoder,
    pretrain_image_encoder,
    save_vision_encoder,
)


def _slot(labels: np.ndarray, color: str) -> np.ndarray:
    i = 4 * COLOR_NAMES.index(color)
    return labels[i:i + 4]


@pytest.mark.parametrize("task", ["reach", "push", "pick_color"])
def test_scene_labels_match_the_task_state(task):
    from ate_ros.core.sim.env import SimEnv

    with SimEnv("sim_arm6", task, seed=3) as env:
        for _ in range(3):
            env.reset(render=False)
            lab = scene_labels(env)
            st = env.task_state()
            assert lab.shape == (LABEL_DIM,)
            np.testing.assert_allclose(lab[-3:], env.ee_position(), atol=1e-6)
            if task == "reach":
                np.testing.assert_allclose(_slot(lab, env.task.color)[1:], st["target"])
                assert lab[0::4][:len(COLOR_NAMES)].sum() == 1
            elif task == "push":
                np.testing.assert_allclose(_slot(lab, "red")[1:], st["block"], atol=1e-9)
                np.testing.assert_allclose(_slot(lab, "green")[1:3], st["goal"])
                assert lab[0::4][:len(COLOR_NAMES)].sum() == 2
            else:
                target = env.task.colors[env.task.target_index]
                np.testing.assert_allclose(_slot(lab, target)[1:], st["target"])
                assert lab[0::4][:len(COLOR_NAMES)].sum() == 2


def test_rendered_frames_and_weights():
    f = render_labelled_frames(["sim_arm6"], ["reach", "pick_color"], 9, seed=1,
                               image_size=(32, 32))
    assert f.images.shape == (9, 32, 32, 3) and f.images.dtype == np.uint8
    assert f.labels.shape == (9, LABEL_DIM) == (9, len(LABEL_NAMES))
    assert f.images.std() > 5  # a scene, not a blank frame
    w = label_weights(f.labels)
    for i in range(len(COLOR_NAMES)):
        present = f.labels[:, 4 * i]
        assert np.all(w[:, 4 * i] == 1)
        assert np.all(w[:, 4 * i + 1:4 * i + 4] == present[:, None])
    assert np.all(w[:, -3:] == 1)


def _square_frames(n: int, size: int = 32, seed: int = 0):
    """Grey frames with one red 4x4 square; label = its centre (x, y) in pixels."""
    rng = np.random.default_rng(seed)
    imgs = np.full((n, size, size, 3), 120, np.uint8)
    labels = np.zeros((n, 2), np.float32)
    for k in range(n):
        r, c = rng.integers(0, size - 4, 2)
        imgs[k, r:r + 4, c:c + 4] = (220, 20, 20)
        labels[k] = (c + 2, r + 2)
    return imgs, labels


def _small_spec(size: int = 32) -> VisionEncoderSpec:
    return VisionEncoderSpec([8, 16, 32], 32, 2, "keypoints", size)


def test_encoder_learns_to_locate_a_small_object():
    imgs, labels = _square_frames(600)
    enc, m = pretrain_image_encoder(_small_spec(), imgs, labels, np.ones_like(labels),
                                    steps=300, batch_size=32, lr=3e-3, seed=0, log_every=0)
    # A mean guess is off by ~7 px; the trained encoder must find the square.
    assert m["val_pos_rmse"] < 0.3 * m["baseline_pos_rmse"], m
    assert not enc.training


def test_bad_inputs_are_refused():
    imgs, labels = _square_frames(40)
    with pytest.raises(ValueError, match="uint8"):
        pretrain_image_encoder(_small_spec(), imgs.astype(np.float32), labels,
                               np.ones_like(labels), steps=1)
    bad = labels.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pretrain_image_encoder(_small_spec(), imgs, bad, np.ones_like(labels), steps=1)
    with pytest.raises(ValueError, match="disagree"):
        pretrain_image_encoder(_small_spec(), imgs, labels[:5], np.ones_like(labels[:5]))


def test_save_load_into_a_policy(tmp_path):
    cfg = VLAConfig(image_size=32, d_model=32, vision_channels=[8, 16, 32], vision_grid=2,
                    text_encoder="hash", chunk_size=4)
    spec = VisionEncoderSpec.from_policy_config(cfg)
    enc = spec.build()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(torch.randn_like(p))
    save_vision_encoder(tmp_path / "v", enc, spec, {"val_pos_rmse": 0.01})
    policy = VLAPolicy(cfg)
    meta = load_vision_encoder(tmp_path / "v", policy)
    assert meta["metrics"]["val_pos_rmse"] == 0.01
    x = torch.rand(2, 3, 32, 32)
    enc.eval()
    policy.eval()
    torch.testing.assert_close(policy.image_encoder(x), enc(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not match"):
        load_vision_encoder(tmp_path / "v", VLAPolicy(VLAConfig(
            image_size=32, d_model=64, vision_channels=[8, 16, 32], vision_grid=2,
            text_encoder="hash", chunk_size=4)))
    with pytest.raises(FileNotFoundError, match="pretrain-vision"):
        load_vision_encoder(tmp_path / "nothing", policy)


def test_cli_pretrain_vision_then_pretrain_from_it(tmp_path, capsys):
    from ate_ros.core.data.policy_dataset import write_toy_dataset
    from ate_ros.core.embodiment import Embodiment, JointSpec

    vis = tmp_path / "vision"
    rc = main(["pretrain-vision", "--out", str(vis), "--embodiments", "sim_arm6", "--tasks",
               "reach", "--frames", "40", "--steps", "3", "--batch-size", "8",
               "--image-size", "16", "--d-model", "32", "--vision-grid", "2"])
    assert rc == 0
    meta = json.loads((vis / "vision_encoder.json").read_text())
    assert meta["spec"]["image_size"] == 16 and meta["metrics"]["steps"] == 3
    assert "held-out position error" in capsys.readouterr().out

    emb = Embodiment(name="pre3", joints=[JointSpec(name=f"j{i}", slot=i, lower=-2, upper=2)
                                          for i in range(3)])
    data = write_toy_dataset(tmp_path / "pre", emb, episodes=2, length=12, image_size=16)
    flags = ["--data", str(data), "--steps", "1", "--image-size", "16", "--layers", "1",
             "--chunk", "4", "--text-encoder", "hash", "--batch-size", "8", "--no-progress",
             "--eval-samples", "8", "--vision-grid", "2", "--vision-init", str(vis)]
    # A learning rate of ~0 keeps the encoder where it started: the saved weights.
    rc = main(["pretrain", "--out", str(tmp_path / "pol"), "--d-model", "32", "--lr", "1e-12",
               *flags])
    assert rc == 0
    from safetensors.torch import load_file

    saved = load_file(str(vis / "vision_encoder.safetensors"))
    got = load_policy(tmp_path / "pol").state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6)
    # An encoder of another width is refused before training.
    rc = main(["pretrain", "--out", str(tmp_path / "pol2"), "--d-model", "64", *flags])
    assert rc == 2
    assert "does not match" in capsys.readouterr().err
