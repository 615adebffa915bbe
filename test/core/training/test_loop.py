"""The optimisation loop the VAE and policy trainers share (core/training/loop.py): the
non-finite guard, checkpoints that resume exactly, EMA, and early stopping, and that both
trainers really use them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ate_ros.core.training.loop import EarlyStopping, Optimization


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loss(model: torch.nn.Module, i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    x = torch.randn(16, 3, generator=g)
    return ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()


def _optim(model, **kw) -> Optimization:
    base = dict(lr=1e-2, weight_decay=0.0, total_steps=20, warmup_steps=2, ema_decay=0.9,
                ema_warmup=1)
    base.update(kw)
    return Optimization(model, **base)


def test_non_finite_losses_are_skipped_then_stop_the_run():
    model = _model()
    opt = _optim(model, max_bad_steps=3)
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step(_loss(model, 0) * math.nan) is None
    assert opt.step(_loss(model, 0) * math.inf) is None
    assert opt.bad_steps == 2 and opt.scheduler.last_epoch == 0  # nothing moved
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    gnorm = opt.step(_loss(model, 0))
    assert gnorm is not None and gnorm > 0 and opt.scheduler.last_epoch == 1
    with pytest.raises(FloatingPointError, match=r"NaN/inf on 3 steps \(last: step 9\)"):
        opt.step(torch.tensor(math.nan, requires_grad=True), where="step 9")


def test_checkpoint_resumes_exactly(tmp_path):
    ref = _model()
    opt = _optim(ref)
    for i in range(10):
        opt.step(_loss(ref, i))
    opt.save(tmp_path / "ck", step=5 + 5, extra={"note": "x"})
    for i in range(10, 15):
        opt.step(_loss(ref, i))

    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)  # different weights: the checkpoint must overwrite them
    opt2 = _optim(other)
    assert Optimization.has_checkpoint(tmp_path / "ck")
    assert opt2.load(tmp_path / "ck") == 10
    for i in range(10, 15):
        opt2.step(_loss(other, i))
    for a, b in zip(ref.parameters(), other.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(opt.ema.model.parameters(), opt2.ema.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert opt2.lr == opt.lr
    state = json.loads((tmp_path / "ck" / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["note"] == "x"


def test_ema_lags_the_weights():
    model = _model()
    opt = _optim(model, ema_decay=0.99, ema_warmup=1)
    for i in range(5):
        opt.step(_loss(model, i))
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(model.parameters(),
                                                         opt.ema.model.parameters(),
                                                         strict=True)]
    assert max(diffs) > 0
    assert _optim(_model(), ema_decay=None).ema is None


def test_early_stopping_keeps_the_best_weights():
    model = _model()
    stop = EarlyStopping(patience=2)
    values = [3.0, 1.0, 2.0, 1.5, 0.5]
    decisions, best_weights = [], None
    for at, v in enumerate(values):
        with torch.no_grad():
            model[0].bias.fill_(float(at))
        decisions.append(stop.update(v, at, model))
        if at == 1:
            best_weights = model[0].bias.detach().clone()
        if decisions[-1]:
            break
    assert decisions == [False, False, False, True]  # two evaluations without improvement
    assert (stop.best, stop.best_at) == (1.0, 1)
    assert stop.restore(model)
    torch.testing.assert_close(model[0].bias, best_weights)
    assert not EarlyStopping(patience=0).update(1.0, 0, model)  # first value: best
    assert not EarlyStopping(patience=0).restore(model)  # nothing recorded


def test_policy_training_stops_early_and_saves_the_best(tmp_path, monkeypatch):
    """steer/pretrain: with --patience the run stops once the val action MSE stopped improving
    and the saved policy is the EMA weights of the best evaluation."""
    from ate_ros.cli import main
    from ate_ros.core.data.policy_dataset import write_toy_dataset
    from ate_ros.core.embodiment import Embodiment, JointSpec
    from ate_ros.core.steer import trainer
    from ate_ros.core.training.files import load_tensors

    emb = Embodiment(name="toy2", joints=[JointSpec(name=f"j{i}", slot=i, lower=-1, upper=1)
                                          for i in range(2)])
    data = write_toy_dataset(tmp_path / "d", emb, episodes=2, length=10, image_size=16)
    mse = iter([0.5, 0.2, 0.3, 0.4, 0.1, 0.1])
    snapshots = {}

    def scripted(policy, *a, **k):
        snapshots[len(snapshots) + 1] = {n: t.detach().clone()
                                         for n, t in policy.state_dict().items()}
        return next(mse)

    monkeypatch.setattr(trainer, "action_mse", scripted)
    out = tmp_path / "pol"
    rc = main(["pretrain", "--data", str(data), "--out", str(out), "--steps", "12",
               "--eval-every", "2", "--save-every", "100", "--patience", "2", "--image-size",
               "16", "--d-model", "32", "--layers", "1", "--chunk", "4", "--text-encoder",
               "hash", "--inference-steps", "2", "--batch-size", "4", "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    # Evaluations at steps 2, 4, 6, 8: best at 4 (0.2), two worse ones, stop at 8.
    assert summary["early_stop_step"] == 8 and summary["best_step"] == 4
    assert summary["steps"] == 8 and len(snapshots) == 4
    saved = load_tensors(out / "model.safetensors")
    for name, t in snapshots[2].items():
        torch.testing.assert_close(saved[name], t, rtol=0, atol=0)


def test_vae_training_skips_non_finite_losses(monkeypatch):
    """The VAE trainer runs on the same loop: a NaN loss is skipped and counted."""
    from ate_ros.core.align import trainer as align_trainer
    from ate_ros.core.align.configuration_vae import StageConfig, VAEConfig
    from ate_ros.core.align.modeling_vae import ActionVAE

    torch.manual_seed(0)
    cfg = VAEConfig(chunk_size=4, latent_dim=2, arch="mlp", mlp_hidden=16)
    model = ActionVAE(cfg)
    x = torch.randn(64, 4, 128)
    data = align_trainer.Tensors(x=x, mask=torch.ones(64, 128, dtype=torch.bool))
    real = align_trainer.vae_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **k):
        terms = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            terms.total = terms.total * math.nan
        return terms

    monkeypatch.setattr(align_trainer, "vae_loss", sometimes_nan)
    out = align_trainer.train_vae(model, data, data, StageConfig(epochs=2, batch_size=16,
                                                                 patience=0),
                                  name="s1", device=torch.device("cpu"), show_progress=False)
    assert out["nonfinite_loss_steps"] == 1 and out["steps"] == 2 * 4 - 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
