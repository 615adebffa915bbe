"""policy_node's inference, ROS-free: what the model is asked (seeds, the RTC prefix, samples),
what its chunk is scored with (OOD), and the observation it is warmed up on.

The node decides *whether* the model runs (:class:`ate_ros.core.deploy.policy_gate.PolicyGate`)
and publishes; this module runs it::

    result = infer_chunk(policy, obs, seed=0, num_samples=2)
    result.chunk          # (H, UNIFIED_DIM) joint targets
    result.samples        # num_samples more chunks, seeds 1 and 2
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ate_ros.core.deploy.policy_gate import ood_score
from ate_ros.core.embodiment import Embodiment
from ate_ros.core.policy_contract import ChunkPolicy, PolicyObservation, supports_rtc

__all__ = ["ChunkInference", "infer_chunk", "predict", "sample_seed", "warmup_observation"]

WARMUP_INSTRUCTION = "warm up"
"""The warm-up's instruction when the policy knows none of its own."""


@dataclass(frozen=True)
class ChunkInference:
    """One inference: the chunk, its samples and what it cost.

    Attributes:
        chunk: (H, UNIFIED_DIM) joint targets in the unified space.
        samples: More chunks for the same observation (other seeds), for the markers.
        model_s: Seconds the model took for ``chunk`` (the samples not counted).
        ood: Latent distance of ``chunk`` to the adaptation distribution (NaN: no VAE).
    """

    chunk: np.ndarray
    samples: list[np.ndarray] = field(default_factory=list)
    model_s: float = 0.0
    ood: float = float("nan")


def sample_seed(seed: int) -> int | None:
    """The model's seed of a ``seed`` parameter: none (fresh noise) when negative."""
    return None if seed < 0 else seed


def predict(policy: ChunkPolicy, obs: PolicyObservation, num_steps: int | None = None,
            seed: int | None = None, prefix: np.ndarray | None = None, delay: int = 0
            ) -> np.ndarray:
    """``policy``'s (H, UNIFIED_DIM) chunk for ``obs``; with the committed ``prefix`` and
    ``delay`` (real-time chunking) when the policy takes them (else without)."""
    if prefix is not None and supports_rtc(policy):
        return np.asarray(policy.predict_chunk(obs, num_steps=num_steps, seed=seed,
                                               prefix=prefix, inference_delay=delay))
    return np.asarray(policy.predict_chunk(obs, num_steps=num_steps, seed=seed))


def infer_chunk(policy: ChunkPolicy, obs: PolicyObservation, *, num_steps: int | None = None,
                seed: int | None = None, num_samples: int = 0, alignment: Any = None,
                prefix: np.ndarray | None = None, delay: int = 0,
                timer: Callable[[], float] = time.perf_counter) -> ChunkInference:
    """The chunk for ``obs`` (seeded ``seed``; RTC ``prefix``/``delay`` as :func:`predict`),
    ``num_samples`` samples (seeds ``seed + 1``... or fresh noise without a seed, and no
    prefix: they show what the model would do unguided) and the chunk's OOD score under the
    stage-2 VAE ``alignment`` (NaN without one)."""
    t0 = timer()
    chunk = predict(policy, obs, num_steps, seed, prefix, delay)
    model_s = timer() - t0
    samples = [predict(policy, obs, num_steps, None if seed is None else seed + k + 1)
               for k in range(num_samples)]
    return ChunkInference(chunk, samples, model_s, ood_score(alignment, chunk))


def warmup_observation(embodiment: Embodiment, policy: ChunkPolicy, env_state_dim: int = 0
                       ) -> PolicyObservation:
    """A made-up observation to warm ``policy`` up on: black frames, the arm mid-range.

    A training instruction has a stored embedding: warming up with it does not load the
    language model (seconds), which the first unseen instruction would.
    """
    emb = embodiment
    images = {c.name: np.zeros((c.height, c.width, 3), np.uint8) for c in emb.cameras}
    mid = ((emb.lower + emb.upper) / 2).astype(np.float32)
    known = list(getattr(policy, "known_instructions", []) or [])
    env = np.zeros(env_state_dim, np.float32) if env_state_dim else None
    return PolicyObservation(images=images, qpos=emb.to_unified(mid), mask=emb.mask,
                             instruction=known[0] if known else WARMUP_INSTRUCTION, stamp=0.0,
                             env_state=env)
