"""The local pool's start method: ``fork`` in a caller that can fork safely (``ate-ros
bag2dataset``), the forkserver next to other threads or thread-pool libraries; a forked pool
converts exactly what a single process converts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from support.fixtures_bags import BagPlan, toy_embodiment, write_bag
from support.paths import ROOT

from ate_ros.core.data.convert import ConversionSpec, convert_bags
from ate_ros.core.data.episode_format import read_episode

PREAMBLE = """
import sys, threading
from ate_ros.core.data.convert import engines, pipeline
"""


def _fresh(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter that imports this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", PREAMBLE + code], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize(("setup", "method"), [
    ("", "fork"),
    ("ev = threading.Event(); threading.Thread(target=ev.wait, daemon=True).start()",
     "forkserver"),
    ("import torch", "forkserver"),
], ids=["converter-only", "another-thread", "torch-imported"])
def test_pool_forks_only_where_safe(setup, method):
    out = _fresh(f"{setup}\nprint(engines.fork_is_safe(), "
                 "engines._pool_context().get_start_method())")
    assert out == f"{method == 'fork'} {method}"


def test_forked_pool_converts_as_one_process(tmp_path):
    bags = [write_bag(tmp_path / f"b{i}", "mcap", BagPlan(duration_s=1.0 + 0.5 * i))
            for i in range(3)]
    emb = tmp_path / "toy.yaml"
    toy_embodiment().to_yaml(emb)
    serial = convert_bags(bags, emb, tmp_path / "serial", ConversionSpec(val_fraction=0))
    out = _fresh(
        "from ate_ros.core.data.convert import ConversionSpec, convert_bags\n"
        f"bags = {[str(b) for b in bags]!r}\n"
        "print(engines._pool_context().get_start_method())\n"
        f"convert_bags(bags, {str(emb)!r}, {str(tmp_path / 'pool')!r}, "
        "ConversionSpec(val_fraction=0, workers=2))\n"
        "from ate_ros.core.data import bags as B\n"
        "print(len(B._STORE_CACHE))\n")
    # fork, and the typestore was built once in the parent (the workers inherited it)
    assert out.split() == ["fork", "1"]
    pool = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    assert len(serial.splits["train"]) == 3
    assert pool["files"] == serial.files  # byte-identical episode files (sha256)
    for rel in serial.splits["train"]:
        a, b = read_episode(tmp_path / "serial" / rel), read_episode(tmp_path / "pool" / rel)
        np.testing.assert_array_equal(a.qpos, b.qpos)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.images["cam"], b.images["cam"])
