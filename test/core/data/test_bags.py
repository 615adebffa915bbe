"""Bag discovery: a sub-folder that is not a bag and holds none is reported, not skipped
silently (#29)."""

from __future__ import annotations

import logging

from ate_ros.core.data.bags import discover_bags


def test_non_bag_subfolder_is_reported(tmp_path, caplog):
    (tmp_path / "bags" / "good").mkdir(parents=True)
    (tmp_path / "bags" / "good" / "ep.mcap").write_bytes(b"")
    (tmp_path / "bags" / "notes").mkdir()
    (tmp_path / "bags" / "notes" / "readme.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="ate_ros.core.data.bags"):
        found = discover_bags([tmp_path / "bags"])
    assert [p.name for p in found] == ["ep.mcap"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "notes" in warned[0] and "not a bag" in warned[0], warned
