"""`ate-ros align --resume`: a run interrupted in any VAE carries on from its last checkpoint and
ends with exactly the weights of a run that was never interrupted; leftover checkpoints are never
thrown away silently, and settings that differ are refused."""

from __future__ import annotations

import pytest
import torch

from ate_ros.cli import main
from ate_ros.core.align import trainer as align_trainer
from ate_ros.core.align.resume import resume_dir
from ate_ros.core.training.files import load_tensors, read_json

EPOCHS = {"stage1": 5, "stage2": 4, "control": 4}  # control: the stage-2 settings
WEIGHTS = ("stage1.safetensors", "stage2.safetensors", "prior.safetensors",
           "checkpoints/stage1_last.safetensors", "checkpoints/control_best.safetensors")


@pytest.fixture(scope="session")
def data(toy_align_data):
    return toy_align_data


def _args(root, out, *extra: str) -> list[str]:
    return ["align", "--pretrain", str(root / "pre"), "--embodiment-pre", str(root / "arm3.yaml"),
            "--adapt", str(root / "ada"), "--embodiment-ada", str(root / "arm4.yaml"),
            "--out", str(out), "--preset", "mlp", "--latent-dim", "4", "--chunk", "8",
            "--epochs-stage1", str(EPOCHS["stage1"]), "--epochs-stage2", str(EPOCHS["stage2"]),
            "--batch-size", "16", "--device", "cpu", "--no-progress", "--no-plots", *extra]


@pytest.fixture(scope="module")
def reference(data):
    """The same run, never interrupted."""
    out = data / "reference"
    assert main(_args(data, out)) == 0
    return out


def _interrupt_at(monkeypatch, epochs_done: int) -> None:
    """Ctrl-C during the validation pass ending epoch ``epochs_done + 1``, counted over the
    VAEs in training order (stage1, then stage2, then control)."""
    calls = [0]
    real = align_trainer.evaluate_loss

    def evaluate(*args, **kwargs):
        calls[0] += 1
        if calls[0] == epochs_done + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(align_trainer, "evaluate_loss", evaluate)


def _same_weights(a, b) -> None:
    for name in WEIGHTS:
        x, y = load_tensors(a / name), load_tensors(b / name)
        assert x.keys() == y.keys(), name
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, msg=f"{name}: {k}")


@pytest.mark.parametrize(("epochs_done", "every"), [(3, 1), (3, 2), (7, 1), (10, 1)],
                         ids=["stage1", "stage1-every2", "stage2", "control"])
def test_resumed_run_equals_an_uninterrupted_one(data, reference, tmp_path, monkeypatch,
                                                 capsys, epochs_done, every):
    out = tmp_path / "run"
    every_args = ("--checkpoint-every", str(every))
    _interrupt_at(monkeypatch, epochs_done)
    assert main(_args(data, out, *every_args)) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and str(resume_dir(out)) in err, err
    assert not out.exists() and resume_dir(out).is_dir()

    # A rerun without --resume does not throw the checkpoints away.
    assert main(_args(data, out, *every_args)) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert resume_dir(out).is_dir() and not out.exists()

    monkeypatch.undo()
    counting = _count_evaluations(monkeypatch)
    assert main(_args(data, out, *every_args, "--resume")) == 0
    assert not resume_dir(out).exists()
    # Only the epochs after the last checkpoint were trained again.
    last_saved = epochs_done - epochs_done % every if epochs_done < EPOCHS["stage1"] \
        else epochs_done
    assert counting[0] == sum(EPOCHS.values()) - last_saved
    _same_weights(out, reference)
    history = read_json(out / "metrics.json")["history"]
    assert history == read_json(reference / "metrics.json")["history"]


def _count_evaluations(monkeypatch) -> list[int]:
    calls = [0]
    real = align_trainer.evaluate_loss

    def evaluate(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(align_trainer, "evaluate_loss", evaluate)
    return calls


def test_resume_with_other_settings_is_refused(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 2)
    assert main(_args(data, out)) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(_args(data, out, "--lr", "0.01", "--resume")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "stage1" in err, err
    assert resume_dir(out).is_dir() and not out.exists()
    # Where and how it runs may change: progress bars, plots, checkpoint spacing.
    assert main(_args(data, out, "--resume", "--checkpoint-every", "3")) == 0
    assert (out / "stage2.safetensors").is_file() and not resume_dir(out).exists()


def test_resume_without_checkpoints_starts_from_the_beginning(data, reference, tmp_path):
    out = tmp_path / "fresh"
    assert main(_args(data, out, "--resume")) == 0
    _same_weights(out, reference)
