"""bag2dataset through Ray: the same per-bag conversion as Ray tasks on a 2-CPU local cluster.

A folder of good bags (MCAP, sqlite3, ROS 1) and bad ones (an empty file, a truncated MCAP) is
converted by the local process pool and by Ray; both must give the same datasets (every array
and attribute of every episode file, the same manifest) and verify. A Ray task whose worker
dies becomes that bag's failed report; the CLI's ``--ray`` runs the same path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from support.fixtures_bags import BagPlan, toy_embodiment, write_bag
from support.paths import ROOT

from ate_ros.core.data.convert import (
    STATUS_FAILED,
    STATUS_OK,
    ConversionSpec,
    convert_bags,
    engines,
)
from ate_ros.core.data.verify import verify_dataset

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

pytestmark = pytest.mark.slow  # a Ray instance takes a few seconds to start

GOOD = ("good_mcap", "good_sqlite", "good_ros1.bag")
BAD = {"empty.mcap": "cannot open bag", "truncated": "truncated or corrupt"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs (2 workers) for the module; quiet, no dashboard."""
    # Workers import ate_ros from this checkout, as the test process does.
    root = str(ROOT)
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_bags") / "bags"
    root.mkdir()
    write_bag(root / "good_mcap", "mcap", BagPlan(duration_s=2.0))
    write_bag(root / "good_sqlite", "sqlite3", BagPlan(duration_s=2.5, image="compressed"))
    write_bag(root / "good_ros1.bag", "ros1", BagPlan(duration_s=1.5))
    (root / "empty.mcap").write_bytes(b"")
    trunc = write_bag(root / "truncated", "mcap", BagPlan(duration_s=2.0))
    f = next(trunc.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
    return root


def _h5_content(path: Path) -> dict[str, object]:
    """Every dataset (as an array) and attribute of an HDF5 file, by name."""
    out: dict[str, object] = {}

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            out[f"{name}[]"] = obj[()]
        for k, v in obj.attrs.items():
            out[f"{name}@{k}"] = v

    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            out[f"@{k}"] = v
        f.visititems(visit)
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def test_ray_converts_the_same_datasets_as_the_local_pool(ray_cluster, mixed_folder, tmp_path):
    emb = toy_embodiment()
    spec = ConversionSpec(val_fraction=0.3, workers=2)
    local = convert_bags([mixed_folder], emb, tmp_path / "local", spec)
    remote = convert_bags([mixed_folder], emb, tmp_path / "ray", spec, ray=True)

    status = {Path(b["path"]).name: b["status"] for b in remote.bags}
    assert status == {**dict.fromkeys(GOOD, STATUS_OK), **dict.fromkeys(BAD, STATUS_FAILED)}
    for b in remote.failed:
        assert BAD[Path(b["path"]).name] in b["error"]
    # The whole manifest: bag reports (topics, counts, drops, episodes), splits, file hashes.
    assert remote.to_dict() == local.to_dict()
    assert len(remote.episodes) >= len(GOOD) and remote.splits["val"]
    for rel in remote.files:
        if rel.endswith(".hdf5"):
            _assert_same(_h5_content(tmp_path / "ray" / rel),
                         _h5_content(tmp_path / "local" / rel))
    assert (tmp_path / "ray" / "embodiment.yaml").read_bytes() == \
        (tmp_path / "local" / "embodiment.yaml").read_bytes()
    assert verify_dataset(tmp_path / "ray").ok


def test_a_dead_ray_task_fails_only_its_bag(ray_cluster):
    def convert(path: str, crash: bool) -> dict:
        if crash:
            os._exit(3)  # the worker process dies, as on an out-of-memory kill
        return {"path": path, "status": STATUS_OK}

    def failed(job: tuple, reason: str) -> dict:
        return {"path": job[0], "status": STATUS_FAILED, "error": reason}

    reports = engines.run_ray(convert, [("a", False), ("b", True), ("c", False)], failed)
    assert [r["path"] for r in reports] == ["a", "b", "c"]
    assert [r["status"] for r in reports] == [STATUS_OK, STATUS_FAILED, STATUS_OK]
    assert "ray task failed" in reports[1]["error"]
    assert ray.is_initialized()  # the caller's instance is left running


def test_cli_ray_flag(ray_cluster, mixed_folder, tmp_path):
    from ate_ros.cli import main

    emb = tmp_path / "toy3.yaml"
    toy_embodiment().to_yaml(emb)
    base = ["bag2dataset", "--embodiment", str(emb), "--split", "0"]
    out = tmp_path / "a"
    assert main(base + ["--out", str(out), str(mixed_folder), "--ray", "--keep-going"]) == 0
    assert main(["verify-dataset", str(out)]) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == \
        ["good_mcap.hdf5", "good_ros1.hdf5", "good_sqlite.hdf5"]
    # --ray right before bags: the first bag is a path, not an address, and stays a bag.
    good = [str(mixed_folder / g) for g in GOOD]
    assert main(base + ["--out", str(tmp_path / "c"), "--ray", *good]) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "train").iterdir()) == \
        ["good_mcap.hdf5", "good_ros1.hdf5", "good_sqlite.hdf5"]
    # Without --keep-going the failed bags give exit status 1; the good ones are still written.
    assert main(base + [str(mixed_folder), "--out", str(tmp_path / "b"), "--ray"]) == 1
    assert (tmp_path / "b" / "train" / "good_mcap.hdf5").exists()


def test_bags_are_submitted_largest_first(tmp_path):
    small = write_bag(tmp_path / "small", "mcap", BagPlan(duration_s=1.0))
    big = write_bag(tmp_path / "big", "mcap", BagPlan(duration_s=3.0))
    jobs = [(small,), (tmp_path / "missing",), (big,)]
    assert engines.largest_first(jobs) == [2, 0, 1]
    assert engines.bag_bytes(tmp_path / "missing") == 0
    assert engines.bag_bytes(big) == sum(f.stat().st_size for f in big.iterdir())
