"""Fast inference paths of a denoising policy: traced observation encoder and denoising steps,
and the fused denoising loop replayed as one CUDA graph.

:class:`TracedInference` is a component the policy owns (``VLAPolicy.inference``), as LeRobot's
policies own their ``RTCProcessor``: it holds no weights, and what it needs of its model is the
small :class:`TraceableModel` protocol (``config``, ``training``, ``observation_keys``,
``encode_observation``, ``memory_kv``, ``denoise``). Each fast path falls back to eager execution
when it cannot be used, so the chunks it returns are those of the eager code.

Shapes: B batch, H chunk length, D = UNIFIED_DIM, d width, S sampler steps; ``kv`` is the
per-layer (K, V) of the memory, each (B, heads, M, d / heads).
"""

from __future__ import annotations

import logging
import warnings
from typing import Protocol

import torch
from torch import nn

from ate_ros.core.steer.schedules import DiffusionSchedule, FlowSchedule

logger = logging.getLogger(__name__)

KV = list[tuple[torch.Tensor, torch.Tensor]]


class SamplerSettings(Protocol):
    """The config fields the fused sampler step reads (constants of its trace)."""

    head: str  # "diffusion" | "flow"
    prediction_type: str  # diffusion: "epsilon" | "sample"
    clip_sample: float  # diffusion: clip of the normalised x0 (0: none)


class TraceableModel(Protocol):
    """What :class:`TracedInference` needs of its model (``VLAPolicy`` satisfies it)."""

    config: SamplerSettings
    training: bool

    @property
    def observation_keys(self) -> tuple[str, ...]:
        """Batch keys :meth:`encode_observation` reads, in a fixed order."""

    def encode_observation(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Batch -> memory tokens (B, M, d)."""

    def memory_kv(self, memory: torch.Tensor) -> KV:
        """Memory -> per-layer cross-attention (K, V)."""

    def denoise(self, x: torch.Tensor, noise_level: torch.Tensor | None, kv: KV,
                time_emb: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, D) noisy chunk, memory K/V, step time embedding -> (B, H, D) model output."""


class TraceCache(dict):
    """Traced decoders and captured CUDA graphs of one model. Never copied: a trace (or graph)
    calls the weights of the module it was made from, so a deep copy (an EMA model) must trace
    its own."""

    def __deepcopy__(self, memo: dict) -> TraceCache:
        return TraceCache()

    def __reduce__(self):
        return (TraceCache, ())


def flat_kv(kv) -> tuple[torch.Tensor, ...]:
    """Per-layer (K, V) pairs -> (k_0, v_0, k_1, v_1, ...) (traced and graphed signatures)."""
    return tuple(t for pair in kv for t in pair)


def pair_kv(flat) -> KV:
    """Inverse of :func:`flat_kv`."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class _ObservationEncoder(nn.Module):
    """Traceable view of ``encode_observation`` + ``memory_kv``: the model's observation tensors
    (in ``observation_keys`` order) -> (memory, k_0, v_0, k_1, v_1, ...)."""

    def __init__(self, model: TraceableModel) -> None:
        super().__init__()
        self.model = model
        self.keys = model.observation_keys

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        memory = self.model.encode_observation(dict(zip(self.keys, inputs)))
        return (memory, *flat_kv(self.model.memory_kv(memory)))


class _DecoderStep(nn.Module):
    """Traceable view of ``denoise`` (tensor-only signature)."""

    def __init__(self, model: TraceableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor,
                kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> torch.Tensor:
        return self.model.denoise(x, None, list(kv), time_emb)


class _SamplerStep(nn.Module):
    """Traceable denoising step: the decoder *and* the sampler update (DDIM or flow Euler).

    ``(x, time_emb, coef, mask, kv) -> next x``. The step's time embedding and its row of the
    coefficient table (:meth:`DiffusionSchedule.ddim_table`, :meth:`FlowSchedule.euler_table`)
    are inputs, so one trace serves every step of every chunk; the head, prediction type and
    clip are constants of the trace (part of its cache key).
    """

    def __init__(self, model: TraceableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, coef: torch.Tensor,
                mask: torch.Tensor, kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
                ) -> torch.Tensor:
        cfg = self.model.config
        out = self.model.denoise(x, None, list(kv), time_emb)
        if cfg.head == "diffusion":
            return DiffusionSchedule.ddim_update(out, x, coef, mask, cfg.prediction_type,
                                                 cfg.clip_sample)
        return FlowSchedule.euler_update(out, x, coef, mask)


class InferenceSwitch:
    """A model attribute that reads and sets one switch of its ``inference`` component
    (``fast_inference = InferenceSwitch("enabled")`` on the model's class)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, model, owner=None):
        return self if model is None else getattr(model.inference, self.name)

    def __set__(self, model, on: bool) -> None:
        setattr(model.inference, self.name, bool(on))


class TracedInference:
    """Traced and CUDA-graphed inference of one model.

    Args:
        model: The model whose methods are traced (it owns this component).
        enabled: Use traces in eval mode without autograd (``fast_inference``); switched off
            for good when a trace fails.
        cuda_graphs: On CUDA, replay the fused denoising loop as one graph; switched off for
            good when a capture fails.

    The owner calls :meth:`clear` whenever its parameter storage may change (``_apply``:
    ``.to()``, ``.half()``), since traces and graphs are bound to it.
    """

    def __init__(self, model: TraceableModel, enabled: bool = True,
                 cuda_graphs: bool = True) -> None:
        self.model = model
        self.enabled = enabled
        self.cuda_graphs = cuda_graphs
        self.cache = TraceCache()

    def clear(self) -> None:
        """Drop every trace and graph (the model's parameter storage may have moved)."""
        self.cache.clear()

    def active(self) -> bool:
        """Whether traces are used now: enabled, eval mode and no autograd."""
        return self.enabled and not self.model.training and not torch.is_grad_enabled()

    def _trace(self, key: tuple, module: nn.Module, inputs: tuple):
        """The cached trace of ``module`` for ``key``, tracing it on ``inputs`` the first time;
        ``None`` (and :attr:`enabled` off from then on) if tracing fails."""
        traced = self.cache.get(key)
        if traced is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(module, inputs, check_trace=False)
            except Exception as exc:  # noqa: BLE001 - any tracing failure -> eager
                logger.warning("tracing the %s step failed (%s); using eager inference",
                               key[0], exc)
                self.enabled = False
                return None
            self.cache[key] = traced
        return traced

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, KV]:
        """Memory tokens and per-layer K/V of a batch; when :meth:`active`, one traced call
        (the eager encoder is a few dozen small module calls, bound by Python dispatch)."""
        model = self.model
        if self.active():
            inputs = tuple(batch[k] for k in model.observation_keys)
            key = ("encoder", *((tuple(t.shape), t.dtype, t.device.type) for t in inputs))
            traced = self._trace(key, _ObservationEncoder(model), inputs)
            if traced is not None:
                memory, *flat = traced(*inputs)
                return memory, pair_kv(flat)
        memory = model.encode_observation(batch)
        return memory, model.memory_kv(memory)

    def denoiser(self, x: torch.Tensor, kv: KV, time_emb: torch.Tensor):
        """``f(x, time_emb) -> model output`` for one chunk's denoising loop (the step-by-step
        sampler: DDPM, inference-time guidance; see :meth:`sampler_step` for the fused one).

        When :meth:`active` the decoder is traced once per input signature with
        ``torch.jit.trace``: at batch 1 the decoder is a few dozen small matmuls and Python
        dispatch is a large share of a step, which the trace removes. The trace is not frozen:
        it shares the model's parameters, so in-place updates (optimiser steps, EMA copies,
        ``load_state_dict``) stay visible. ``torch.compile`` would need a C++ toolchain and
        tens of seconds per shape on the robot's CPU; ``torch.jit.trace`` is deprecated but
        works, and any failure falls back to eager execution.
        """
        kv_t = tuple(kv)
        model = self.model

        def eager(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return model.denoise(x_, None, kv, t_)

        if not self.active():
            return eager
        key = ("decoder", tuple(x.shape), x.dtype, x.device.type, tuple(time_emb.shape),
               tuple(tuple(k.shape) for k, _ in kv_t))
        traced = self._trace(key, _DecoderStep(model), (x, time_emb, kv_t))
        if traced is None:
            return eager
        return lambda x_, t_: traced(x_, t_, kv_t)

    def sampler_step(self, x: torch.Tensor, kv: KV, time_emb: torch.Tensor,
                     coef: torch.Tensor, mask: torch.Tensor):
        """``f(x, time_emb, coef) -> next x``: one traced call runs the decoder and the DDIM or
        flow Euler update (about ten small ops per step when run eagerly). ``None`` when not
        :meth:`active` (training, autograd, disabled) or tracing failed: then the caller runs
        the loop step by step."""
        if not self.active():
            return None
        kv_t = tuple(kv)
        cfg = self.model.config
        key = ("sampler", cfg.head, cfg.prediction_type, float(cfg.clip_sample),
               tuple(x.shape), x.dtype, x.device.type, tuple(time_emb.shape),
               tuple(coef.shape), coef.dtype, tuple(mask.shape), mask.dtype,
               tuple(tuple(k.shape) for k, _ in kv_t))
        traced = self._trace(key, _SamplerStep(self.model), (x, time_emb, coef, mask, kv_t))
        if traced is None:
            return None
        return lambda x_, t_, c_: traced(x_, t_, c_, mask, kv_t)

    def graphed_loop(self, x: torch.Tensor, kv: KV, temb: torch.Tensor, coef: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor | None:
        """The fused denoising loop (all steps) replayed as one CUDA graph; ``None`` off CUDA,
        with :attr:`cuda_graphs` off, or when capture failed (then the loop runs step by step).

        At batch 1 a GPU step is a few dozen tiny kernels, so the loop is bound by kernel
        launches on the host. One graph per input signature (batch, steps, memory length) is
        captured after the traced step has been optimised; each call copies its inputs into
        the graph's static buffers and replays it. The graph reads the parameters' storage, so
        in-place weight updates stay visible; :meth:`clear` drops it with the traces.
        """
        if not (self.cuda_graphs and x.is_cuda):
            return None
        cfg = self.model.config
        key = ("graph", cfg.head, cfg.prediction_type, float(cfg.clip_sample), tuple(x.shape),
               x.dtype, x.device.index, tuple(temb.shape), tuple(coef.shape), coef.dtype,
               tuple(mask.shape), tuple(tuple(k.shape) for k, _ in kv))
        entry = self.cache.get(key)
        inputs = (x, temb, coef, mask, *flat_kv(kv))
        if entry is None:
            entry = self._capture_loop(key, inputs)
            if entry is None:
                return None
        graph, static, out = entry
        for dst, src in zip(static, inputs):
            dst.copy_(src)
        graph.replay()
        return out.clone()  # the next replay overwrites ``out``

    def _capture_loop(self, key: tuple, inputs: tuple[torch.Tensor, ...]):
        static = tuple(t.clone() for t in inputs)
        sx, st, sc, sm, *flat = static
        step = self.sampler_step(sx, pair_kv(flat), st[:1], sc[0], sm)
        if step is None:
            return None

        def loop() -> torch.Tensor:
            y = sx
            for t_i, c_i in zip(st.split(1), sc.unbind(0)):
                y = step(y, t_i, c_i)
            return y

        dev = sx.device
        try:
            # Warm-up on a side stream, as capture requires; three passes let the TorchScript
            # profiling executor settle on its optimised plan, which is what gets captured.
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    loop()
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = loop()
        except Exception as exc:  # noqa: BLE001 - any capture failure -> uncaptured loop
            logger.warning("capturing the denoising loop as a CUDA graph failed (%s); "
                           "running it step by step", exc)
            self.cuda_graphs = False
            return None
        entry = (graph, static, out)
        self.cache[key] = entry
        return entry
