"""Where a bag2dataset run's time goes: timestamps per process, per worker, per bag and stage.

    python benchmarks/bag2dataset_probe.py --workers 2 --embodiment E.yaml --out DIR BAGS...

Runs ``convert_bags`` (what ``ate-ros bag2dataset`` runs, same pool) in this fresh process with
timers around the converter's stages (open, read, clean, align, decode, write: the HDF5
file and its sha256, account; ``other``: the rest of a bag's time, mostly building its
streams) and around the pool, and prints one JSON object: the process's phases
(interpreter start + imports, the main process before the pool, pool start-up until the first
bag starts, the bags, the tail after the last bag, the main process after the pool), each
worker's busy and idle time, and the stage totals. ``bench_bag2dataset.py`` calls it.
"""

from __future__ import annotations

import time

T_START = time.time()  # before the converter's imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ate_ros.core.data.convert import ConversionSpec, convert_bags, engines, pipeline  # noqa: E402
from ate_ros.core.data.convert import streams as _streams  # noqa: E402
from ate_ros.core.data.convert import writing as _writing  # noqa: E402

T_IMPORTED = time.time()
_STAGES: dict[str, float] = {}
_POOL: dict[str, float] = {}


def _timed(owner, attr: str, label: str, into: dict[str, float]) -> None:
    fn = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        t = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            into[label] = into.get(label, 0.0) + time.time() - t

    setattr(owner, attr, wrapper)


for _owner, _attr, _label in ((pipeline, "BagSource", "open"),
                              (_streams.BagStreams, "read", "read"),
                              (_streams.BagStreams, "clean", "clean"),
                              (pipeline, "align", "align"),
                              (pipeline, "decode_frames", "decode"),
                              (pipeline, "write_episodes", "write"),
                              (_writing, "write_episode", "write.hdf5"),
                              (_writing, "sha256_file", "write.sha256"),
                              (pipeline, "account", "account")):
    _timed(_owner, _attr, _label, _STAGES)
_convert_bag = pipeline.convert_bag


def timed_convert_bag(*args) -> dict:
    """``convert_bag`` with its worker, start, end and stage seconds in ``report["_probe"]``."""
    _STAGES.clear()
    t = time.time()
    report = _convert_bag(*args)
    report["_probe"] = {"pid": os.getpid(), "start": t, "end": time.time(),
                        "stages": dict(_STAGES)}
    return report


pipeline.convert_bag = timed_convert_bag  # convert_bags looks it up when it runs
_run_pool = engines.run_pool


def _timed_pool(*args, **kwargs):
    _POOL["start"] = time.time()
    try:
        return _run_pool(*args, **kwargs)
    finally:
        _POOL["end"] = time.time()


engines.run_pool = _timed_pool


def timeline(reports: list[dict], t_call: float, t_return: float) -> dict:
    """The run's phases (seconds from ``T_START``), workers and stage totals."""
    probes = [r["_probe"] for r in reports]
    first = min(p["start"] for p in probes)
    last = max(p["end"] for p in probes)
    pool_start = _POOL.get("start", t_call)
    pool_end = _POOL.get("end", t_return)
    workers = {}
    for p in probes:
        w = workers.setdefault(p["pid"], {"bags": 0, "busy_s": 0.0, "first": p["start"],
                                          "last": p["end"]})
        w["bags"] += 1
        w["busy_s"] += p["end"] - p["start"]
        w.setdefault("seconds", []).append((p["start"], p["end"] - p["start"]))
        w["first"], w["last"] = min(w["first"], p["start"]), max(w["last"], p["end"])
    for w in workers.values():
        w["seconds"] = [d for _, d in sorted(w["seconds"])]  # in the order it ran them
    stages: dict[str, float] = {}
    for p in probes:
        for k, v in p["stages"].items():
            stages[k] = stages.get(k, 0.0) + v
    bag_s = sum(p["end"] - p["start"] for p in probes)
    stages["other"] = bag_s - sum(v for k, v in stages.items() if "." not in k)
    return {
        "phases_s": {
            "interpreter_and_imports": T_IMPORTED - T_START,
            "main_before_pool": pool_start - T_IMPORTED,
            "pool_startup": first - pool_start,
            "bags": last - first,
            "pool_tail": pool_end - last,
            "main_after_pool": t_return - pool_end},
        "workers": [{"bags": w["bags"], "busy_s": round(w["busy_s"], 3),
                     "starts_after_s": round(w["first"] - pool_start, 3),
                     "idle_at_end_s": round(last - w["last"], 3),
                     # warm-up a worker pays on its first bag (lazy imports, typestore,
                     # fresh heap): the first bag's time over the median of the others
                     "first_bag_extra_s": round(w["seconds"][0] - float(
                         np.median(w["seconds"][1:])), 3) if w["bags"] > 1 else None}
                    for w in sorted(workers.values(), key=lambda w: w["first"])],
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "bag_seconds": [round(p["end"] - p["start"], 3) for p in probes],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bags", nargs="+")
    ap.add_argument("--embodiment", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    t_call = time.time()
    manifest = convert_bags(args.bags, args.embodiment, args.out,
                            ConversionSpec(val_fraction=0, workers=args.workers))
    t_return = time.time()
    result = timeline(manifest.bags, t_call, t_return)
    result["phases_s"] = {k: round(v, 3) for k, v in result["phases_s"].items()}
    result["start_method"] = (engines._pool_context().get_start_method()
                              if args.workers > 1 else "none (in process)")
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
