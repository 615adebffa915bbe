"""Normalisation statistics: fit, apply (numpy and torch), serialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ate_ros.core.normalization import NormStats


def test_mean_std_and_min_max_roundtrip() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 0.0], [0.5, 2.0, 0.0], size=(200, 3))
    for mode in ("mean_std", "min_max"):
        s = NormStats.fit(x, mode=mode)
        y = s.normalize(x)
        np.testing.assert_allclose(s.unnormalize(y), x, atol=1e-5)
        if mode == "mean_std":
            np.testing.assert_allclose(y[:, :2].mean(0), 0, atol=1e-6)
            np.testing.assert_allclose(y[:, :2].std(0), 1, atol=1e-5)
        else:
            np.testing.assert_allclose(y[:, :2].min(0), -1, atol=1e-6)
            np.testing.assert_allclose(y[:, :2].max(0), 1, atol=1e-6)
        # A constant dimension passes through without dividing by ~0.
        assert np.all(np.isfinite(y)) and np.allclose(y[:, 2], 0)


def test_unused_dims_pass_through_and_torch_matches_numpy() -> None:
    x = np.random.default_rng(1).normal(size=(50, 4)) * 3 + 1
    used = np.array([True, False, True, False])
    s = NormStats.fit(x, used=used)
    assert s.mean[1] == 0 and s.std[1] == 1
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    out = s.normalize(t)
    np.testing.assert_allclose(out.detach().numpy(), s.normalize(x), rtol=1e-5, atol=1e-5)
    out.sum().backward()  # differentiable (guidance goes through it)
    np.testing.assert_allclose(t.grad[0].numpy(), 1 / s.std, rtol=1e-6)


def test_serialisation_and_validation() -> None:
    s = NormStats.fit(np.arange(12, dtype=float).reshape(4, 3), mode="min_max")
    back = NormStats.from_tensors(s.to_tensors("action"), "action", mode="min_max")
    np.testing.assert_array_equal(back.max, s.max)
    assert NormStats.from_json(s.to_json()).mode == "min_max"
    with pytest.raises(ValueError, match="missing"):
        NormStats.from_tensors({}, "action", "mean_std")
    with pytest.raises(ValueError, match="NaN"):
        NormStats.fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="mode"):
        NormStats.fit(np.ones((2, 2)), mode="zscore")


def test_torch_scale_shift_are_kept_per_dtype_and_device_but_not_pickled():
    import pickle

    stats = NormStats.fit(np.random.default_rng(0).normal(size=(50, 4)))
    x = torch.randn(3, 4)
    first = stats.normalize(x)
    assert torch.equal(stats.normalize(x), first)
    assert set(stats._torch) == {(torch.float32, torch.device("cpu"))}
    stats.normalize(x.double())
    assert len(stats._torch) == 2
    copy = pickle.loads(pickle.dumps(stats))
    assert copy._torch == {}
    assert torch.equal(copy.normalize(x), first)
