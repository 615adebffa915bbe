"""Benchmark: bag2dataset throughput relative to a bare rosbags read+deserialize loop.

A generated bag (7-joint ``/joint_states`` at 100 Hz + 96x96 rgb8 images at 30 Hz, 3 minutes;
``--quick``: 30 s) is converted to a 10 Hz dataset, once per storage (sqlite3, MCAP). In the same
run, a bare loop reads and deserialises every message of the same bag with rosbags (AnyReader),
the floor any Python converter built on rosbags pays. The ratio is
``conversion throughput / bare-loop throughput`` (goal >= 0.7). Scaling: the same bag copied
four times, converted with ``--workers 1`` and ``--workers 2``.

Prints a table and writes ``benchmarks/results/bench_bag2dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_ros.core.data import topics as T
from ate_ros.core.data.bag_writer import BagRecorder
from ate_ros.core.data.convert import ConversionSpec, convert_bags
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec

RESULTS = Path(__file__).parent / "results" / "bench_bag2dataset.json"
JOINT_HZ, IMAGE_HZ, CONTROL_HZ, DOF, SIZE = 100, 30, 10.0, 7, 96


def embodiment() -> Embodiment:
    return Embodiment(
        name="bench7",
        joints=[JointSpec(name=f"joint{i}", slot=i, lower=-3.0, upper=3.0) for i in range(DOF)],
        control_rate_hz=CONTROL_HZ, cameras=[CameraSpec(name="cam", width=SIZE, height=SIZE)])


def make_bag(path: Path, storage: str, duration_s: float) -> int:
    """Write the benchmark bag; returns its message count."""
    rng = np.random.default_rng(0)
    names = [f"joint{i}" for i in range(DOF)][::-1]  # reversed: the converter must reorder
    base = rng.integers(0, 255, size=(SIZE, SIZE, 3), dtype=np.uint8)
    t0, n = 1_000 * 10**9, 0
    events = [(k * 10**9 // JOINT_HZ, 0, k) for k in range(int(duration_s * JOINT_HZ))]
    events += [(k * 10**9 // IMAGE_HZ, 1, k) for k in range(int(duration_s * IMAGE_HZ))]
    with BagRecorder(path, storage=storage) as rec:
        rec.write_string(t0, "benchmark task")
        for dt, kind, k in sorted(events):
            if kind == 0:
                rec.write_joint_state(t0 + dt, names, np.sin(k * 0.01 + np.arange(DOF)),
                                      velocities=np.zeros(DOF), recv_delay_ns=500_000)
            else:
                rec.write_image(t0 + dt, np.roll(base, k, axis=1), topic=T.camera_topic("cam"),
                                recv_delay_ns=2_000_000)
            n += 1
    return n + 1


def bare_loop(path: Path) -> float:
    """Seconds for rosbags to read and deserialise every message of the bag."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    t = time.perf_counter()
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
    return time.perf_counter() - t


def convert(inputs: list[Path], out: Path, workers: int = 1) -> tuple[float, dict]:
    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    m = convert_bags(inputs, embodiment(), out, ConversionSpec(val_fraction=0, workers=workers))
    return time.perf_counter() - t, m.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s bags instead of 3 minutes")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    duration = 30.0 if args.quick else 180.0
    rows, scaling = [], []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for storage in ("sqlite3", "mcap"):
            bag = tmp / f"bench_{storage}"
            n_msgs = make_bag(bag, storage, duration)
            size_mb = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
            bare_loop(bag)  # warm the page cache and the typestores for both sides
            convert([bag], tmp / "warm")
            t_bare = min(bare_loop(bag) for _ in range(args.repeats))
            timings = [convert([bag], tmp / "out") for _ in range(args.repeats)]
            t_conv, manifest = min(timings, key=lambda x: x[0])
            frames = manifest["bags"][0]["frames"]["written"]
            rows.append({"storage": storage, "duration_s": duration, "messages": n_msgs,
                         "bag_mb": round(size_mb, 1), "frames_written": frames,
                         "bare_s": round(t_bare, 3), "convert_s": round(t_conv, 3),
                         "bare_msgs_per_s": round(n_msgs / t_bare),
                         "convert_msgs_per_s": round(n_msgs / t_conv),
                         "ratio": round(t_bare / t_conv, 3)})
            if storage == "mcap":
                copies = [bag]
                for i in range(1, 4):
                    c = tmp / f"bench_copy{i}"
                    shutil.copytree(bag, c)
                    copies.append(c)
                for w in (1, 2):
                    t_w, _ = convert(copies, tmp / f"scale{w}", workers=w)
                    scaling.append({"workers": w, "bags": len(copies), "seconds": round(t_w, 3),
                                    "msgs_per_s": round(n_msgs * len(copies) / t_w)})
    base = scaling[0]["seconds"]
    for s in scaling:
        s["speedup"] = round(base / s["seconds"], 2)

    print(f"bag2dataset vs bare rosbags read+deserialize ({duration:.0f} s bags, joint states "
          f"{JOINT_HZ} Hz + {SIZE}x{SIZE} images {IMAGE_HZ} Hz -> {CONTROL_HZ:.0f} Hz)")
    print(f"{'storage':8} {'msgs':>7} {'MB':>6} {'bare s':>8} {'convert s':>10} "
          f"{'bare msg/s':>11} {'conv msg/s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['storage']:8} {r['messages']:7d} {r['bag_mb']:6.1f} {r['bare_s']:8.3f} "
              f"{r['convert_s']:10.3f} {r['bare_msgs_per_s']:11d} "
              f"{r['convert_msgs_per_s']:11d} {r['ratio']:6.2f}")
    print(f"\nscaling (4 MCAP bags, {os.cpu_count()} CPUs visible)")
    print(f"{'workers':>7} {'seconds':>8} {'msg/s':>9} {'speedup':>8}")
    for s in scaling:
        print(f"{s['workers']:7d} {s['seconds']:8.3f} {s['msgs_per_s']:9d} {s['speedup']:8.2f}")
    result = {"benchmark": "bag2dataset", "quick": args.quick, "goal_ratio": 0.7,
              "rows": rows, "scaling": scaling,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
