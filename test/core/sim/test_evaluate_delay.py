"""Closed-loop evaluation with simulated inference delay on the stepped clock: sync holds the
arm while the policy runs, the asynchronous modes keep executing, rtc hands the sampler the
commands that execute meanwhile; results do not depend on how fast the machine is."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("mujoco")

from support.paths import ROOT  # noqa: E402

from ate_ros.core.sim.evaluate import evaluate_policy, motion_metrics, supports_rtc  # noqa: E402

LOWDIM = ROOT / "assets" / "pretrained_lowdim"
pytestmark = pytest.mark.skipif(not (LOWDIM / "model.safetensors").exists(),
                                reason="no low-dim policy")


@pytest.fixture(scope="module")
def policy():
    from ate_ros.core.steer.policies import load_policy

    return load_policy(LOWDIM)


class Recording:
    """The policy, recording each call's prefix; optionally slow (wall-clock sleep)."""

    def __init__(self, policy, sleep: float = 0.0, rtc: bool = True) -> None:
        self.policy, self.sleep = policy, sleep
        self.chunk_size = policy.chunk_size
        self.camera_names = policy.camera_names
        self.n_action_steps = policy.n_action_steps
        self.calls: list[tuple[np.ndarray | None, int]] = []
        if not rtc:
            self.predict_chunk = self._plain

    def _plain(self, obs, num_steps=None, seed=None):
        return self.predict_chunk(obs, num_steps, seed)

    def predict_chunk(self, obs, num_steps=None, seed=None, prefix=None, inference_delay=0):
        if self.sleep:
            time.sleep(self.sleep * (1 + (len(self.calls) % 3)))
        self.calls.append((None if prefix is None else np.array(prefix), inference_delay))
        return self.policy.predict_chunk(obs, num_steps, seed, prefix=prefix,
                                         inference_delay=inference_delay)


def _run(policy, mode, delay, episodes=2, task="reach"):
    return evaluate_policy(policy, "sim_arm6", task, episodes=episodes, seed=0,
                           inference_delay=delay, chunking=mode, keep_traces=episodes)


def _records(r):
    return [(x.success, x.steps, x.chunks, x.final_ee, x.switch_velocity_jump) for x in r.records]


def test_results_do_not_depend_on_the_machines_speed(policy):
    fast = _run(Recording(policy), "rtc", 4)
    slow = _run(Recording(policy, sleep=0.004), "rtc", 4)
    assert _records(fast) == _records(slow)
    assert fast.traces[0]["commands"] == slow.traces[0]["commands"]


def test_sync_holds_the_arm_while_the_policy_runs(policy):
    D = 4
    r = _run(policy, "sync", D)
    tr = r.traces[0]
    c = np.array(tr["commands"])
    for s in tr["switches"][1:]:
        # The D ticks before a chunk arrives: decelerating to rest, the last ones at rest.
        wait = c[s - 2:s]
        assert np.abs(np.diff(wait, axis=0)).max() < 1e-9
    rec = r.records[0]
    assert rec.pause_ticks >= D * (rec.chunks - 1)


@pytest.mark.parametrize("mode", ["replace", "crossfade", "ensemble", "rtc"])
def test_asynchronous_modes_keep_moving(policy, mode):
    D = 4
    r = _run(policy, mode, D, task="push")
    sync = _run(policy, "sync", D, task="push")
    for rec in r.records:
        # Only the first chunk is waited for (nothing planned yet), and the end of the episode.
        assert rec.pause_ticks <= D + 2, rec.pause_ticks
        assert rec.rejected_chunks == 0
    waited = sum(D * (x.chunks - 1) for x in sync.records)
    assert waited >= 2 * D
    assert sum(x.pause_ticks for x in sync.records) >= sum(
        x.pause_ticks for x in r.records) + waited
    assert r.execution["dropped_points"] > 0  # chunks from D-tick-old observations


def test_rtc_hands_the_sampler_what_executes_while_it_runs(policy):
    D = 3
    rec = Recording(policy)
    r = _run(rec, "rtc", D, episodes=1)
    c = np.array(r.traces[0]["commands"])
    switches = r.traces[0]["switches"]
    guided = [(p, d) for p, d in rec.calls if p is not None]
    assert len(guided) == len(switches) - 1 and all(d == D for _, d in guided)
    emb_slots = np.nonzero(np.abs(guided[0][0]).sum(0))[0]
    for (prefix, _), s in zip(guided, switches[1:]):
        # Requested at tick s - D: the commands for the next D ticks are the prefix's first D.
        np.testing.assert_allclose(c[s - D:s], prefix[:D][:, emb_slots], atol=1e-6)


def test_rtc_needs_a_policy_that_takes_a_prefix(policy):
    plain = Recording(policy, rtc=False)
    assert not supports_rtc(plain) and supports_rtc(policy)
    with pytest.raises(ValueError, match="committed prefix"):
        _run(plain, "rtc", 2, episodes=1)
    with pytest.raises(ValueError, match="chunking"):
        _run(policy, "async", 2, episodes=1)


def test_zero_delay_sync_is_the_plain_loop(policy):
    plain = evaluate_policy(policy, "sim_arm6", "reach", episodes=2, seed=0)
    assert _records(plain) == _records(_run(policy, "sync", 0))


def test_motion_metrics_on_a_hand_made_trajectory():
    dt = 0.1
    q = np.zeros((10, 1))
    q[:, 0] = [0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4]  # 1 rad/s, then 2 from k=5
    jump, peak, jerk = motion_metrics(q, [0, 5], dt)
    assert jump == pytest.approx(1.0)
    assert peak == pytest.approx(10.0)  # (2 - 1) / dt
    assert jerk == pytest.approx(np.sqrt(np.mean(np.diff(q[:, 0], 3) ** 2)) / dt ** 3)
    assert motion_metrics(q, [0], dt)[0] is None  # no switch between chunks
