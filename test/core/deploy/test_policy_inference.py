"""policy_node's inference, ROS-free (:mod:`ate_ros.core.deploy.policy_inference`), on the
built-in ``wave`` policy: seeds of the chunk and its samples, the RTC prefix reaching only a
policy that takes it (and only the chunk), the OOD score and the warm-up observation."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.deploy import WavePolicy
from ate_ros.core.deploy.policy_inference import (
    WARMUP_INSTRUCTION,
    infer_chunk,
    predict,
    sample_seed,
    warmup_observation,
)
from ate_ros.core.policy_contract import PolicyObservation


class RtcWave(WavePolicy):
    """The wave, taking a committed prefix (real-time chunking): records what it was given."""

    def __init__(self, emb) -> None:
        super().__init__(emb, chunk_size=6)
        self.calls: list[tuple[int | None, np.ndarray | None, int]] = []

    def predict_chunk(self, obs, num_steps=None, seed=None, prefix=None, inference_delay=0):
        self.calls.append((seed, prefix, inference_delay))
        return super().predict_chunk(obs, num_steps, seed)


def observation(emb, stamp: float = 1.5) -> PolicyObservation:
    return PolicyObservation(images={}, qpos=emb.to_unified(np.zeros(emb.dof)), mask=emb.mask,
                             stamp=stamp)


def test_chunk_and_samples_are_seeded_one_after_the_other(small_embodiment):
    emb = small_embodiment
    wave, obs = WavePolicy(emb, chunk_size=5), observation(emb)
    ticks = iter([10.0, 10.25])
    out = infer_chunk(wave, obs, seed=3, num_samples=2, timer=lambda: next(ticks))
    np.testing.assert_array_equal(out.chunk, wave.predict_chunk(obs, seed=3))
    for k, sample in enumerate(out.samples):
        np.testing.assert_array_equal(sample, wave.predict_chunk(obs, seed=4 + k))
        assert not np.allclose(sample, out.chunk)  # another phase: visibly another sample
    assert out.model_s == pytest.approx(0.25) and np.isnan(out.ood)  # no VAE: NaN
    # No seed: fresh noise for the chunk and every sample.
    assert sample_seed(-1) is None and sample_seed(0) == 0
    rtc = RtcWave(emb)
    infer_chunk(rtc, obs, seed=sample_seed(-1), num_samples=2)
    assert [seed for seed, _, _ in rtc.calls] == [None, None, None]


def test_the_committed_prefix_reaches_only_a_policy_that_takes_it(small_embodiment):
    emb = small_embodiment
    rtc, obs = RtcWave(emb), observation(emb)
    prefix = np.full((2, 128), 0.5, np.float32)
    infer_chunk(rtc, obs, seed=0, num_samples=1, prefix=prefix, delay=2)
    (s0, p0, d0), (s1, p1, d1) = rtc.calls
    assert s0 == 0 and p0 is prefix and d0 == 2  # the chunk: guided by the prefix
    assert s1 == 1 and p1 is None and d1 == 0  # the sample: what the model does unguided
    # A policy without real-time chunking gets no prefix keywords (it would raise).
    plain = WavePolicy(emb, chunk_size=6)
    np.testing.assert_array_equal(predict(plain, obs, prefix=prefix, delay=2),
                                  plain.predict_chunk(obs))


def test_the_chunk_is_scored_by_the_alignment_vae(small_embodiment):
    seen = []

    class Vae:  # the stage-2 alignment's ood_score contract, on a 4-point window
        chunk_size = 4

        def ood_score(self, x):
            seen.append(x.clone())
            return x.abs().sum(dim=(1, 2))

    emb = small_embodiment
    wave, obs = WavePolicy(emb, chunk_size=6), observation(emb)
    out = infer_chunk(wave, obs, seed=0, num_samples=1, alignment=Vae())
    [window] = seen  # the chunk only, not its samples
    np.testing.assert_allclose(window[0].numpy(), out.chunk[:4])
    assert out.ood == pytest.approx(float(np.abs(out.chunk[:4]).sum()), rel=1e-6)


def test_warmup_observation_is_black_mid_range_and_uses_a_known_instruction(camera_embodiment):
    emb = camera_embodiment
    wave = WavePolicy(emb)
    obs = warmup_observation(emb, wave)
    assert list(obs.images) == ["wrist"] and obs.images["wrist"].shape == (24, 32, 3)
    assert not obs.images["wrist"].any()
    np.testing.assert_allclose(obs.qpos[emb.slots], (emb.lower + emb.upper) / 2)
    assert (obs.mask == emb.mask).all() and obs.env_state is None and obs.stamp == 0.0
    assert obs.instruction == WARMUP_INSTRUCTION
    wave.known_instructions = ["stack the cubes", "wave"]  # stored embeddings: no text model
    obs = warmup_observation(emb, wave, env_state_dim=5)
    assert obs.instruction == "stack the cubes"
    assert obs.env_state.shape == (5,) and not obs.env_state.any()
