"""Benchmark: bag2dataset throughput per storage, against a bare rosbags loop, and its scaling.

The bag: 7-joint ``/joint_states`` at 100 Hz + 96x96 rgb8 images at 30 Hz, converted to a
10 Hz dataset. Generated bags are cached under ``--cache`` (generation is never timed).

Per storage (sqlite3, MCAP, ROS 1), one 3-minute bag (``--quick``: 30 s), in this process:
the conversion time next to a bare loop that reads and deserialises every message with rosbags
(AnyReader), the floor any Python converter built on rosbags pays. ``ratio`` is
``bare time / conversion time`` (goal >= 0.7); MB/s is the bag's size over the conversion time,
the real-time factor its recorded duration over the conversion time.

Scaling: ``--scale-bags`` MCAP bags of ``--scale-minutes`` each (hard links to one generated
bag, so they cost no disk), converted by ``ate-ros bag2dataset --workers 1`` and
``--workers 2`` in a fresh process each, as a user runs it (best of ``--repeats``). Then one
run per worker count through ``bag2dataset_probe.py`` (the same ``convert_bags`` and pool, with
timestamps per process phase, worker, bag and stage) gives the breakdown: ``startup`` is the
fixed cost of the 2-worker run (interpreter and imports, the main process before the pool, the
pool until the first bag starts, after the last bag until the process has exited), plus each
worker's busy and idle time, its first-bag warm-up and the stage totals. The goal is a run
where start-up is under 10% of the 2-worker time, and a 2-worker speed-up >= 1.8.

Prints a table and writes ``benchmarks/results/bench_bag2dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ate_ros.core.data import topics as T
from ate_ros.core.data.bag_writer import BagRecorder
from ate_ros.core.data.convert import ConversionSpec, convert_bags
from ate_ros.core.embodiment import CameraSpec, Embodiment, JointSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_meta import result_meta  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_bag2dataset.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ate_ros" / "bench_bags"
JOINT_HZ, IMAGE_HZ, CONTROL_HZ, DOF, SIZE = 100, 30, 10.0, 7, 96
BAG_VERSION = 1
"""Bump when make_bag changes, so cached bags are written again."""
STORAGES = ("sqlite3", "mcap", "ros1")
ROOT = Path(__file__).resolve().parent.parent


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


def cached_bag(cache: Path, storage: str, duration_s: float) -> tuple[Path, int]:
    """The benchmark bag for a storage and duration, written once into ``cache``."""
    name = f"v{BAG_VERSION}_{storage}_{duration_s:g}s"
    path = cache / (name + ".bag" if storage == "ros1" else name)
    count = cache / (name + ".messages")
    if not count.exists():
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        count.write_text(str(make_bag(path, storage, duration_s)))
    return path, int(count.read_text())


def bag_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.iterdir() if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def link_copies(bag: Path, folder: Path, n: int) -> list[Path]:
    """``n`` bags in ``folder`` that are hard links to ``bag``'s files (rosbag2 folders)."""
    copies = []
    for i in range(n):
        c = folder / f"bag{i:02d}"
        shutil.copytree(bag, c, copy_function=os.link)
        copies.append(c)
    return copies


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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def cli_run(bags: list[Path], emb_yaml: Path, out: Path, workers: int) -> float:
    """Wall seconds of ``ate-ros bag2dataset`` in a fresh process (fails loudly)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "ate_ros.cli", "bag2dataset", *map(str, bags),
           "--embodiment", str(emb_yaml), "--out", str(out), "--split", "0",
           "--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"bag2dataset failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def probe_run(bags: list[Path], emb_yaml: Path, out: Path, workers: int) -> dict:
    """``bag2dataset_probe.py``'s breakdown of one run in a fresh process, with its wall
    seconds and ``fixed_s``: all but the bags' span (start-up, tail and interpreter exit)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, str(Path(__file__).with_name("bag2dataset_probe.py")),
           *map(str, bags), "--embodiment", str(emb_yaml), "--out", str(out),
           "--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(wall, 3)
    res["fixed_s"] = round(wall - res["phases_s"]["bags"], 3)
    res["phases_s"]["exit_and_rest"] = round(wall - sum(res["phases_s"].values()), 3)
    return res


def print_breakdown(breakdown: dict[int, dict]) -> None:
    """Per worker count: the process phases, each worker, the stage totals (seconds)."""
    print("\nbreakdown (one probe run each; seconds)")
    for w, b in breakdown.items():
        phases = ", ".join(f"{k} {v:.3f}" for k, v in b["phases_s"].items())
        print(f"  {w} worker(s), {b['start_method']}: wall {b['wall_s']:.3f}, fixed "
              f"{b['fixed_s']:.3f}; {phases}")
        for i, wk in enumerate(b["workers"]):
            print(f"    worker {i}: {wk['bags']} bags, busy {wk['busy_s']:.3f}, starts after "
                  f"{wk['starts_after_s']:.3f}, idle at end {wk['idle_at_end_s']:.3f}, first-bag "
                  f"warm-up {wk['first_bag_extra_s']}")
        print("    stages (all bags): " + ", ".join(f"{k} {v:.3f}"
                                                    for k, v in b["stages_s"].items()))


def storage_row(storage: str, bag: Path, n_msgs: int, duration: float, tmp: Path,
                repeats: int) -> dict:
    size = bag_mb(bag)
    bare_loop(bag)  # warm the page cache and the typestores for both sides
    convert([bag], tmp / "warm")
    t_bare = min(bare_loop(bag) for _ in range(repeats))
    t_conv, manifest = min((convert([bag], tmp / "out") for _ in range(repeats)),
                           key=lambda x: x[0])
    return {"storage": storage, "duration_s": duration, "messages": n_msgs,
            "bag_mb": round(size, 1), "frames_written": manifest["bags"][0]["frames"]["written"],
            "bare_s": round(t_bare, 3), "convert_s": round(t_conv, 3),
            "convert_mb_per_s": round(size / t_conv, 1),
            "realtime_factor": round(duration / t_conv, 1),
            "bare_msgs_per_s": round(n_msgs / t_bare),
            "convert_msgs_per_s": round(n_msgs / t_conv),
            "ratio": round(t_bare / t_conv, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="30 s bags, 4 scaling bags of 1 minute")
    parser.add_argument("--repeats", type=int, default=3, help="best of N timings")
    parser.add_argument("--scale-bags", type=int, default=None, help="default 8 (quick: 4)")
    parser.add_argument("--scale-minutes", type=float, default=None,
                        help="length of each scaling bag (default 5, quick: 1)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="generated bags")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    meta = result_meta()
    duration = 30.0 if args.quick else 180.0
    n_scale = args.scale_bags or (4 if args.quick else 8)
    scale_s = 60.0 * (args.scale_minutes or (1.0 if args.quick else 5.0))
    rows, scaling = [], []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for storage in STORAGES:
            bag, n_msgs = cached_bag(args.cache, storage, duration)
            rows.append(storage_row(storage, bag, n_msgs, duration, tmp, args.repeats))
        bag, n_msgs = cached_bag(args.cache, "mcap", scale_s)
        copies = link_copies(bag, tmp / "scale", n_scale)
        emb_yaml = tmp / "bench7.yaml"
        embodiment().to_yaml(emb_yaml)
        total_mb = bag_mb(bag) * n_scale
        best: dict[int, float] = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            for w in (1, 2):
                t_w = cli_run(copies, emb_yaml, tmp / f"scale_out{w}", w)
                best[w] = min(best.get(w, t_w), t_w)
        for w, t_w in best.items():
            scaling.append({"workers": w, "bags": n_scale, "bag_minutes": scale_s / 60,
                            "seconds": round(t_w, 3), "speedup": round(best[1] / t_w, 2),
                            "mb_per_s": round(total_mb / t_w, 1),
                            "realtime_factor": round(n_scale * scale_s / t_w, 1),
                            "msgs_per_s": round(n_msgs * n_scale / t_w)})
        breakdown = {w: probe_run(copies, emb_yaml, tmp / f"probe_out{w}", w) for w in (1, 2)}
    startup = breakdown[2]["fixed_s"]
    startup_fraction = startup / breakdown[2]["wall_s"]
    meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print(f"bag2dataset vs bare rosbags read+deserialize ({duration:.0f} s bags, joint states "
          f"{JOINT_HZ} Hz + {SIZE}x{SIZE} images {IMAGE_HZ} Hz -> {CONTROL_HZ:.0f} Hz)")
    print(f"{'storage':8} {'msgs':>7} {'MB':>6} {'bare s':>8} {'convert s':>10} {'MB/s':>7} "
          f"{'x real':>7} {'ratio':>6}")
    for r in rows:
        print(f"{r['storage']:8} {r['messages']:7d} {r['bag_mb']:6.1f} {r['bare_s']:8.3f} "
              f"{r['convert_s']:10.3f} {r['convert_mb_per_s']:7.1f} {r['realtime_factor']:7.1f} "
              f"{r['ratio']:6.2f}")
    print(f"\nscaling: ate-ros bag2dataset, {n_scale} MCAP bags of {scale_s / 60:g} min "
          f"({total_mb:.0f} MB), {os.cpu_count()} CPUs, load {meta['machine']['load_average']} "
          f"-> {meta['load_average_end']}")
    print(f"{'workers':>7} {'seconds':>8} {'MB/s':>7} {'x real':>7} {'speedup':>8}")
    for s in scaling:
        print(f"{s['workers']:7d} {s['seconds']:8.3f} {s['mb_per_s']:7.1f} "
              f"{s['realtime_factor']:7.1f} {s['speedup']:8.2f}")
    print_breakdown(breakdown)
    print(f"start-up (all of the 2-worker probe run but its bags' span): {startup:.3f} s = "
          f"{100 * startup_fraction:.1f}% of that run ({breakdown[2]['wall_s']:.3f} s)")
    result = {"benchmark": "bag2dataset", "meta": meta, "quick": args.quick, "goal_ratio": 0.7,
              "goal_speedup": 1.8, "rows": rows, "scaling": scaling,
              "startup_s": round(startup, 3), "startup_fraction": round(startup_fraction, 3),
              "breakdown": {str(w): b for w, b in breakdown.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
