"""Executor ``blend: rtc`` on a stepped clock: the switch at the stamped takeover index without
cross-fade, late chunks, the velocity limit at the seam and the existing safety checks."""

from __future__ import annotations

import numpy as np
import pytest

from ate_ros.core.embodiment import Embodiment, JointSpec
from ate_ros.core.execution import ChunkScheduler, ExecutionConfig

DT = 0.1


def _emb() -> Embodiment:
    return Embodiment(name="rtc2", control_rate_hz=1 / DT, max_start_deviation=0.3,
                      joints=[JointSpec(name=f"j{i}", slot=i, lower=-1.0, upper=1.0,
                                        max_velocity=1.0, max_acceleration=50.0)
                              for i in range(2)])


def _ramp(start: float, slope: float, n: int, first: int = 0) -> np.ndarray:
    """(n, 2) points start + slope * (first + i + 1) on joint 0, 0 on joint 1."""
    c = np.zeros((n, 2))
    c[:, 0] = start + slope * (first + np.arange(1, n + 1))
    return c


class Loop:
    """A scheduler on a stepped clock whose robot follows every command exactly."""

    def __init__(self, blend: str) -> None:
        self.s = ChunkScheduler(_emb(), ExecutionConfig(blend=blend, replan_steps=0))
        self.q = np.zeros(2)
        self.k = 0
        self.sent: dict[int, np.ndarray] = {}  # tick index k -> command for time k * DT

    @property
    def now(self) -> float:
        return self.k * DT

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            q = self.s.command(self.now, self.q)
            self.k += 1
            self.sent[self.k] = q
            self.q = q

    def at(self, k: int) -> np.ndarray:
        return self.sent[k]


def _started(blend: str) -> tuple[Loop, np.ndarray]:
    loop = Loop(blend)
    old = _ramp(0.0, 0.02, 16)  # for times 0.1 .. 1.6
    assert loop.s.submit(old, 0.0, 0.0, loop.q).accepted
    loop.tick(3)  # commands for 0.1, 0.2, 0.3 sent; now = 0.3
    return loop, old


def _new_chunk(old: np.ndarray) -> np.ndarray:
    """Observation at 0.3 (index i due at 0.3 + (i+1) DT): its committed prefix (times 0.4,
    0.5) is a little off the old plan, so which one runs shows; from index 2 a steeper ramp."""
    new = np.zeros((16, 2))
    new[:2] = old[3:5] + 0.01
    new[2:, 0] = old[4, 0] + 0.03 * np.arange(1, 15)
    return new


def test_rtc_switches_at_the_takeover_index_without_crossfade():
    loop, old = _started("rtc")
    new = _new_chunk(old)
    r = loop.s.submit(new, 0.3, loop.now + 0.05, loop.q, takeover=2)  # arrives early
    assert r.accepted and r.dropped == 0 and r.superseded == 2
    loop.tick(8)
    np.testing.assert_allclose(loop.at(4), old[3], atol=1e-9)  # the committed plan ran
    np.testing.assert_allclose(loop.at(5), old[4], atol=1e-9)
    for i in range(2, 8):  # from the takeover index on: exactly the new chunk
        np.testing.assert_allclose(loop.at(3 + i + 1), new[i], atol=1e-9)


def test_other_blends_differ_where_rtc_keeps_the_plan():
    for blend in ("replace", "crossfade"):
        loop, old = _started(blend)
        new = _new_chunk(old)
        assert loop.s.submit(new, 0.3, loop.now + 0.05, loop.q, takeover=2).accepted
        loop.tick(8)
        if blend == "replace":  # the takeover index means nothing: new[0] runs at 0.4
            np.testing.assert_allclose(loop.at(4), new[0], atol=1e-9)
        else:  # cross-faded: the new chunk is not followed exactly at the takeover
            assert abs(loop.at(6)[0] - new[2, 0]) > 1e-3


def test_a_late_chunk_drops_its_past_part_and_switches_at_the_first_future_point():
    loop, old = _started("rtc")
    new = _new_chunk(old)
    loop.tick(4)  # now = 0.7: the takeover time 0.6 has passed
    r = loop.s.submit(new, 0.3, loop.now, loop.q, takeover=2)
    assert r.accepted and r.dropped == 4 and r.superseded == 0
    loop.tick(5)
    np.testing.assert_allclose(loop.at(6), old[5], atol=1e-9)  # already sent: the old plan
    np.testing.assert_allclose(loop.at(7), old[6], atol=1e-9)
    for k in range(8, 12):  # index i = k - 4 of the new chunk, at the velocity limit or below
        assert np.abs(loop.at(k) - loop.at(k - 1)).max() <= 1.0 * DT + 1e-9
    # The seam (0.7 -> 0.8): new[4] is 0.036 above the old plan; within the limit, so exact.
    np.testing.assert_allclose(loop.at(8), new[4], atol=1e-9)


def test_no_command_jumps_beyond_the_velocity_limit_at_the_seam():
    loop, old = _started("rtc")
    new = _new_chunk(old)
    new[2:, 0] += 0.5  # a 0.5 rad jump at the takeover: five ticks at the limit
    assert loop.s.submit(new, 0.3, loop.now, loop.q, takeover=2).accepted
    limited = loop.s.stats.limited_commands
    loop.tick(12)
    steps = np.abs(np.diff(np.array([loop.at(k) for k in range(3, 16)]), axis=0))
    assert steps.max() <= 1.0 * DT + 1e-9
    assert steps.max() > 0.9 * DT  # it did run at the limit
    assert loop.s.stats.limited_commands > limited
    np.testing.assert_allclose(loop.at(15)[0], new[11, 0], atol=1e-6)  # caught up later


def test_rtc_keeps_the_safety_checks():
    loop, old = _started("rtc")
    new = _new_chunk(old)
    bad = new.copy()
    bad[5, 1] = np.nan
    assert loop.s.submit(bad, 0.3, loop.now, loop.q, takeover=2).code == "non_finite"
    far = new + 0.6  # first point 0.6 from the robot (max 0.3)
    assert loop.s.submit(far, 0.3, loop.now, loop.q, takeover=2).code == "start_deviation"
    stale = loop.s.submit(new[:2], 0.0, loop.now, loop.q, takeover=1)
    assert stale.code == "stale"
    over = new.copy()
    over[2:, 0] = np.minimum(old[4, 0] + 0.08 * np.arange(1, 15), 3.0)  # beyond upper = 1.0
    assert loop.s.submit(over, 0.3, loop.now, loop.q, takeover=2).accepted
    loop.tick(30)
    qs = np.array(list(loop.sent.values()))
    assert qs[:, 0].max() <= 1.0 + 1e-12 and qs[:, 0].max() > 0.99


def test_rtc_without_a_plan_takes_the_chunk_and_one_before_its_takeover_changes_nothing():
    loop = Loop("rtc")
    first = _ramp(0.0, 0.02, 8)
    r = loop.s.submit(first, 0.0, 0.0, loop.q, takeover=3)
    assert r.accepted and r.superseded == 0
    loop.tick(3)
    np.testing.assert_allclose(loop.at(1), first[0], atol=1e-9)
    before = loop.s.planned(loop.now)[1]
    r = loop.s.submit(first[3:5] + 0.05, 0.3, loop.now, loop.q,
                      takeover=2)
    assert r.accepted and r.superseded == 2
    np.testing.assert_allclose(loop.s.planned(loop.now)[1], before, atol=1e-12)


def test_blend_rtc_is_a_valid_choice():
    assert ExecutionConfig(blend="rtc").blend == "rtc"
    with pytest.raises(ValueError, match="blend"):
        ExecutionConfig(blend="rtc2")
