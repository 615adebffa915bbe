"""policy_node's real-time chunking decisions (core/deploy/chunk_timing.py) on a stepped clock:
the trigger at latency + margin points left, the committed prefix, the takeover index."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.deploy.chunk_timing import ChunkTiming

DT = 0.1


def _chunk(start: float, n: int = 10, slope: float = 0.1) -> np.ndarray:
    return (start + slope * np.arange(1, n + 1))[:, None] * np.ones((1, 2))


def test_rtc_triggers_when_latency_plus_margin_points_are_left():
    t = ChunkTiming(DT, "rtc", quantile=1.0, margin=1, initial_delay=2)
    assert t.due(0.0)  # nothing planned
    t.published(_chunk(0.0), 0.0, 0, now=0.25)  # 0.25 s: 3 control periods
    assert t.latency.periods() == 3
    # Points at 0.1 .. 1.0: due when at most 3 + 1 are left after now.
    assert not t.due(0.55)  # 0.6 .. 1.0 left: 5
    assert t.due(0.65)  # 0.7 .. 1.0: 4


def test_prefix_is_the_plan_at_the_new_chunks_times_and_takeover_is_the_delay():
    t = ChunkTiming(DT, "rtc", quantile=1.0, margin=0)
    c = _chunk(0.0)
    t.published(c, 0.0, 0, now=0.2)
    prefix, d = t.request(0.65)  # off the old grid: interpolated
    assert d == 2
    # Times 0.75, 0.85, 0.95; the chunk's value is its time (0.1 rad per 0.1 s).
    np.testing.assert_allclose(prefix[:, 0], [0.75, 0.85, 0.95], atol=1e-6)
    assert len(prefix) == 3  # the plan ends at 1.0


def test_the_plan_keeps_the_old_chunk_before_the_takeover():
    t = ChunkTiming(DT, "rtc", quantile=1.0, margin=0)
    t.published(_chunk(0.0), 0.0, 0, now=0.1)
    new = _chunk(5.0)  # far off, so which one is planned shows
    t.published(new, 0.5, 3, now=0.8)
    prefix, _ = t.request(0.5)  # times 0.6 .. : old at 0.6, 0.7, 0.8; new from 0.9 (index 3)
    np.testing.assert_allclose(prefix[:3, 0], [0.6, 0.7, 0.8], atol=1e-6)
    np.testing.assert_allclose(prefix[3:, 0], new[3:, 0], atol=1e-6)


def test_sync_waits_for_the_plan_to_end_and_blends_run_on_every_observation():
    s = ChunkTiming(DT, "sync")
    s.published(_chunk(0.0, 4), 0.0, 0, now=0.1)
    assert not s.due(0.35) and s.due(0.4)
    assert s.request(0.4) == (None, 0)
    b = ChunkTiming(DT, "crossfade")
    b.published(_chunk(0.0, 4), 0.0, 0, now=0.1)
    assert b.due(0.0)
    with pytest.raises(ValueError, match="chunking"):
        ChunkTiming(DT, "async")


def test_reset_forgets_the_plan_not_the_latency():
    t = ChunkTiming(DT, "rtc", quantile=1.0, margin=0)
    t.published(_chunk(0.0), 0.0, 0, now=0.3)
    t.reset()
    assert t.request(0.1) == (None, 3) and t.due(0.1)
