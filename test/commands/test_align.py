"""`ate-ros align` end to end on a small generated dataset, stage-1 reuse, and bad input."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from ate_ros.cli import main
from ate_ros.core.align import load_alignment
from ate_ros.core.align.synthetic import toy_arm, write_toy_dataset
from ate_ros.core.training.files import read_json

FAST = ["--preset", "mlp", "--latent-dim", "4", "--chunk", "8", "--epochs-stage1", "2",
        "--epochs-stage2", "2", "--batch-size", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="session")
def data(toy_align_data):
    return toy_align_data


def _args(root, out, **extra):
    args = ["align", "--pretrain", str(root / "pre"), "--embodiment-pre", str(root / "arm3.yaml"),
            "--adapt", str(root / "ada"), "--embodiment-ada", str(root / "arm4.yaml"),
            "--out", str(out), *FAST]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def test_cli_end_to_end_and_stage1_reuse(data, capsys):
    out = data / "run"
    assert main(_args(data, out)) == 0
    printed = capsys.readouterr().out
    assert "stage2" in printed and "control" in printed and "alignment written" in printed
    for name in ("stage1.safetensors", "stage2.safetensors", "prior.safetensors", "config.json",
                 "metrics.json", "plots/losses.png", "plots/latent_pca.png",
                 "checkpoints/stage1_best.safetensors", "checkpoints/stage2_last.safetensors"):
        assert (out / name).is_file(), name
    summary = read_json(out / "metrics.json")["summary"]
    q = summary["quality"]
    for k in ("stage1", "stage1_on_adapt", "stage2", "control", "checks"):
        assert k in q
    assert np.isfinite(q["stage2"]["recon_mae"]) and q["stage2"]["mmd_to_prior"] < 1
    cfg = read_json(out / "config.json")
    assert cfg["mask"] == [0, 1, 2, 3] and cfg["stage1"]["norm"]["mode"] == "mean_std"
    b = load_alignment(out)
    assert b.chunk_size == 8 and b.latent_dim == 4
    assert b.encode(torch.zeros(2, 8, 128))[0].shape == (2, 4)

    # reuse stage 1 (no pre-training data needed), skip the control
    out2 = data / "run2"
    args = ["align", "--stage1", str(out), "--adapt", str(data / "ada"), "--embodiment-ada",
            str(data / "arm4.yaml"), "--out", str(out2), "--no-control", "--no-plots", *FAST]
    assert main(args) == 0
    b2 = load_alignment(out2)
    torch.testing.assert_close(b2.prior_mean, b.prior_mean)
    x = torch.randn(3, 8, 128)
    torch.testing.assert_close(b2.encode(x, stage=1)[0], b.encode(x, stage=1)[0])
    assert "control" not in read_json(out2 / "metrics.json")["summary"]["quality"]


def _assert_clean_failure(data, out, capsys, match, **kw):
    assert main(_args(data, out, **kw)) == 2
    err = capsys.readouterr().err
    assert match in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_cli_bad_input_leaves_nothing(data, tmp_path, capsys):
    # NaN in one adaptation episode
    bad = tmp_path / "bad"
    write_toy_dataset(bad, toy_arm("arm4", 4), n_train=2, n_val=1, length=20, seed=3)
    f = bad / "train" / "episode_0001.hdf5"
    with h5py.File(f, "r+") as h:
        q = h["qpos"][()]
        q[2, 0] = np.inf
        del h["qpos"]
        h["qpos"] = q
    out = tmp_path / "out"
    args = _args(data, out)
    args[args.index("--adapt") + 1] = str(bad)
    assert main(args) == 2
    assert "episode_0001.hdf5" in capsys.readouterr().err and not out.exists()
    # dimension mismatch: the 4-joint data declared as the 3-joint arm
    args = _args(data, out)
    args[args.index("--embodiment-ada") + 1] = str(data / "arm3.yaml")
    assert main(args) == 2
    assert "columns but embodiment" in capsys.readouterr().err and not out.exists()
    # missing val/ (one bag converted): validation holds out the last train episode
    nov = tmp_path / "noval"
    write_toy_dataset(nov, toy_arm("arm4", 4), n_train=3, n_val=1, length=20)
    for p in (nov / "val").iterdir():
        p.unlink()
    (nov / "val").rmdir()
    args = [*_args(data, out), "--no-plots"]
    args[args.index("--adapt") + 1] = str(nov)
    assert main(args) == 0 and (out / "stage2.safetensors").is_file()
    shutil.rmtree(out)
    # too-short episodes (chunk longer than every episode)
    _assert_clean_failure(data, out, capsys, "no episode is at least", chunk=64)
    # mismatched list lengths
    args = _args(data, out)
    args[args.index("--pretrain") + 1] = f"{data / 'pre'},{data / 'pre'}"
    assert main(args) == 2
    assert "one embodiment per dataset" in capsys.readouterr().err
