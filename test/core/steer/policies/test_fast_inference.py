"""The traced-inference component on a model of its own: only the TraceableModel protocol."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from torch import nn

from ate_ros.core.steer.policies.fast_inference import TracedInference
from ate_ros.core.steer.schedules import FlowSchedule

D, d, H = 3, 8, 4


class TinyDenoiser(nn.Module):
    """The smallest model that satisfies :class:`TraceableModel`: one linear memory, one
    decoder layer; it owns its :class:`TracedInference` as ``VLAPolicy`` does."""

    observation_keys = ("state",)

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(head="flow", prediction_type="epsilon", clip_sample=0.0)
        self.enc = nn.Linear(D, d)
        self.kv = nn.Linear(d, 2 * d)
        self.dec = nn.Linear(D + d, D)
        self.inference = TracedInference(self)

    def encode_observation(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.enc(batch["state"]).unsqueeze(1)  # (B, 1, d)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        k, v = self.kv(memory).chunk(2, -1)
        return [(k, v)]

    def denoise(self, x, noise_level, kv, time_emb=None):
        ctx = (kv[0][0] + kv[0][1]).expand(-1, x.shape[1], -1)
        return self.dec(torch.cat([x, ctx], -1)) + time_emb


def _inputs():
    g = torch.Generator().manual_seed(0)
    batch = {"state": torch.randn(2, D, generator=g)}
    x = torch.randn(2, H, D, generator=g)
    return batch, x, torch.full((1, 1, 1), 0.3)


@torch.no_grad()
def test_traced_calls_match_the_models_own_methods():
    torch.manual_seed(0)
    m = TinyDenoiser().eval()
    batch, x, temb = _inputs()
    memory, kv = m.inference.encode(batch)
    torch.testing.assert_close(memory, m.encode_observation(batch))
    torch.testing.assert_close(kv[0][1], m.memory_kv(memory)[0][1])
    out = m.inference.denoiser(x, kv, temb)(x, temb)
    torch.testing.assert_close(out, m.denoise(x, None, kv, temb))
    flow = FlowSchedule()
    coef = flow.euler_table(flow.grid(3), x.dtype, x.device)
    mask = torch.ones(2, 1, D)
    step = m.inference.sampler_step(x, kv, temb, coef[0], mask)
    torch.testing.assert_close(step(x, temb, coef[0]),
                               FlowSchedule.euler_update(m.denoise(x, None, kv, temb), x,
                                                         coef[0], mask))
    assert sorted(k[0] for k in m.inference.cache) == ["decoder", "encoder", "sampler"]


@torch.no_grad()
def test_training_autograd_or_disabled_run_eagerly_and_copies_trace_their_own():
    m = TinyDenoiser()
    batch, x, temb = _inputs()
    m.train()
    m.inference.encode(batch)
    assert m.inference.sampler_step(x, [], temb, temb, temb) is None
    m.eval()
    with torch.enable_grad():
        m.inference.encode(batch)
    m.inference.enabled = False
    m.inference.encode(batch)
    assert not m.inference.cache, "no trace outside eval mode without autograd"
    m.inference.enabled = True
    m.inference.encode(batch)
    assert m.inference.cache
    twin = copy.deepcopy(m)  # an EMA copy: bound to its own weights, no borrowed traces
    assert twin.inference.model is twin and not twin.inference.cache
    twin.enc.bias.add_(1.0)
    assert not torch.allclose(twin.inference.encode(batch)[0], m.inference.encode(batch)[0])


class Untraceable(TinyDenoiser):
    """Returns a ``None`` value among its K/V: fine eagerly, not a traceable output."""

    def memory_kv(self, memory):
        return [(self.kv(memory), None)]


@torch.no_grad()
def test_a_failing_trace_falls_back_to_eager_and_switches_tracing_off():
    m = Untraceable().eval()
    batch, _, _ = _inputs()
    memory, kv = m.inference.encode(batch)
    torch.testing.assert_close(memory, m.encode_observation(batch))
    assert kv[0][1] is None
    assert m.inference.enabled is False and not m.inference.cache
