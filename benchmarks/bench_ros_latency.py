"""End-to-end ROS overhead: camera image published -> ActionChunk received, minus model time.

    .venv/bin/python benchmarks/bench_ros_latency.py [--quick] [--frames 600] [--rate 30]
    .venv/bin/python benchmarks/bench_ros_latency.py --soak [--soak-seconds 600]
    .venv/bin/python benchmarks/bench_ros_latency.py --processes   # one process per node
    .venv/bin/python benchmarks/bench_ros_latency.py --processes --observation-source sensors

perception_node (event mode: one Observation per frame) and policy_node (a hold policy with a
known, tiny model time) run in this process on one executor, as ``ate-ros run`` spins the graph
(:func:`ate_ros.ros.spin.graph_executor`; ``--executor multi``: the 4-thread
MultiThreadedExecutor it used before), talking over real DDS on loopback; a driver node
publishes an rgb8 image and joint_states at ``--rate`` Hz and receives the ActionChunks.
Overhead = receive time - publish time - model time (measured inside the policy), matched by
stamp. ``--processes`` runs perception_node and
policy_node in processes of their own, as ``ros2 launch`` does, each spun like its installed
executable (both on a SingleThreadedExecutor, see their ``main``); model time is then the hold
policy's, measured in the single-process mode (~0.02 ms). ``--soak`` reports drift (latency of
the last vs first minute), chunks missing and the growth of this process's RSS.
One-process results break the overhead down by stage (``stages``: wall p50/p99 between marks
set in the nodes' callbacks and publish calls, plus the thread-CPU of the one-thread stages;
:data:`STAGES`) and give the CPU time of the whole process per frame, which other load on a
shared machine disturbs less than wall time.
``--observation-source sensors`` starts no perception_node: policy_node subscribes to the image
and joint_states itself (one DDS hop less). Writes
benchmarks/results/bench_ros_latency[_sensors][_processes|_soak].json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_meta import result_meta  # noqa: E402

from ate_ros.core.deploy import OBSERVATION_SOURCES  # noqa: E402
from ate_ros.ros.spin import GRAPH_EXECUTORS  # noqa: E402


class TimedHold:
    """Hold policy that records its own model time per observation stamp."""

    chunk_size = 16

    def __init__(self, emb, clock: StageClock | None = None):
        self.emb = emb
        self.camera_names = [c.name for c in emb.cameras]
        self.model_time: dict[float, float] = {}
        self.clock = clock

    def predict_chunk(self, obs, num_steps=None, seed=None):
        key = round(obs.stamp, 6)
        if self.clock is not None:
            self.clock.mark("model_start", key)
        t0 = time.perf_counter()
        out = np.repeat(obs.qpos[None], self.chunk_size, axis=0)
        self.model_time[key] = time.perf_counter() - t0
        if self.clock is not None:
            self.clock.mark("model_end", key)
        return out


STAGES = {
    # stage -> (from mark, to mark): wall time between two marks of one frame
    "publish": ("sent", "published"),
    "dds_to_perception": ("published", "perception_in"),
    "perception_callback": ("perception_in", "observation_out"),
    "dds_to_policy": ("observation_out", "policy_in"),
    "policy_before_model": ("policy_in", "model_start"),
    "model": ("model_start", "model_end"),
    "chunk_message": ("model_end", "chunk_out"),
    "dds_to_consumer": ("chunk_out", "received"),
}
"""Stages of the image -> chunk path; on the sensors path ``dds_to_policy`` starts at
``published`` (no perception_node)."""


class StageClock:
    """Wall (perf_counter) and thread-CPU marks per frame, keyed by the image stamp (s).

    Hooks wrap the nodes' callbacks and publish calls in this process only (one-process mode):
    perception's image callback and its publish, policy_node's ``_handle``, the model, and the
    chunk's publish. A mark's CPU time is the calling thread's (``time.thread_time``), so the
    CPU of a stage is defined where both marks are on one thread (the callbacks).
    """

    def __init__(self) -> None:
        self.wall: dict[str, dict[float, float]] = {}
        self.cpu: dict[str, dict[float, float]] = {}
        self._undo: list = []

    def mark(self, name: str, key: float) -> None:
        self.wall.setdefault(name, {}).setdefault(key, time.perf_counter())
        self.cpu.setdefault(name, {}).setdefault(key, time.thread_time())

    def install(self, per, pol) -> None:
        from ate_ros.nodes import perception_node, policy_node
        from ate_ros.ros import conversions as conv

        def key_of(msg) -> float:
            return round(conv.time_to_sec(msg.header.stamp), 6)

        def wrap_publish(module, mark_name: str, wanted) -> None:
            original = module.publish_unless_shutdown

            def publish(node, publisher, msg):
                if wanted(msg):
                    self.mark(mark_name, key_of(msg))
                return original(node, publisher, msg)

            module.publish_unless_shutdown = publish
            self._undo.append(lambda: setattr(module, "publish_unless_shutdown", original))

        if per is not None:
            inputs = per.inputs
            on_image = inputs._on_image

            def perception_in(camera, msg, first):
                self.mark("perception_in", key_of(msg))
                return on_image(camera, msg, first)

            inputs._on_image = perception_in
            wrap_publish(perception_node, "observation_out", lambda m: True)
        handle = pol._handle

        def policy_in(item, stamp):
            self.mark("policy_in", round(stamp, 6))
            return handle(item, stamp)

        pol._handle = policy_in
        wrap_publish(policy_node, "chunk_out", lambda m: len(m.positions) > 0)

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()

    def breakdown(self, keys: list[float], source: str) -> dict:
        """Per stage: wall p50/p99 (ms) over ``keys``, and thread-CPU p50 for one-thread
        stages."""
        out = {}
        for stage, (a, b) in STAGES.items():
            if source == "sensors" and stage in ("dds_to_perception", "perception_callback"):
                continue
            if source == "sensors" and stage == "dds_to_policy":
                a = "published"
            wa, wb = self.wall.get(a, {}), self.wall.get(b, {})
            ks = [k for k in keys if k in wa and k in wb]
            if not ks:
                continue
            d = np.array([wb[k] - wa[k] for k in ks])
            row = {"wall_p50_ms": 1e3 * float(np.percentile(d, 50)),
                   "wall_p99_ms": 1e3 * float(np.percentile(d, 99))}
            if stage in ("perception_callback", "policy_before_model", "model",
                         "chunk_message", "publish"):
                ca, cb = self.cpu[a], self.cpu[b]
                row["cpu_p50_ms"] = 1e3 * float(np.median([cb[k] - ca[k] for k in ks]))
            out[stage] = row
        return out


def node_configs(embodiment: str, source: str = "topic"):
    """Perception (one Observation per frame) and policy (hold) settings of every mode."""
    from ate_ros.core.deploy import PerceptionConfig, PolicyNodeConfig, SensorInputsConfig

    return (PerceptionConfig(embodiment=embodiment, rate_hz=0.0, max_age=1.0, max_skew=1.0),
            PolicyNodeConfig(embodiment=embodiment, policy="hold", publish_markers=False,
                             max_obs_age=1.0, observation_source=source,
                             sensors=SensorInputsConfig(max_age=1.0, max_skew=1.0)))


def run_child(role: str, embodiment: str, source: str) -> int:
    """One node in this process, spun like its installed executable (``ate_ros.ros.spin``)."""
    from ate_ros.nodes.perception_node import PerceptionNode
    from ate_ros.nodes.policy_node import PolicyNode
    from ate_ros.ros.spin import spin_node

    per_cfg, pol_cfg = node_configs(embodiment, source)

    def make():
        node = PerceptionNode(per_cfg) if role == "perception" else PolicyNode(pol_cfg)
        node.trigger_configure()  # what the launch file's autostart does
        node.trigger_activate()
        return node

    if role == "perception":  # as perception_node's main()
        return spin_node(make, single_threaded=True)
    # as policy_node's main()
    return spin_node(make, before_destroy=lambda n: n.stop_inference(), single_threaded=True)


def run_bench(frames: int, rate: float, embodiment: str, soak_seconds: float = 0.0,
              processes: bool = False, source: str = "topic",
              executor_kind: str = GRAPH_EXECUTORS[0]) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.task import Future
    from sensor_msgs.msg import Image, JointState

    from ate_ros.core.embodiment import load_embodiment
    from ate_ros.msg import ActionChunk
    from ate_ros.nodes.perception_node import PerceptionNode
    from ate_ros.nodes.policy_node import PolicyNode
    from ate_ros.ros import conversions as conv
    from ate_ros.ros.qos import COMMAND_QOS
    from ate_ros.ros.spin import graph_executor, prefer_short_gil_slices

    prefer_short_gil_slices()

    emb = load_embodiment(embodiment)
    cam = emb.cameras[0]
    context = rclpy.Context()
    rclpy.init(context=context)
    holder: dict = {}
    clock = None if processes else StageClock()

    def factory(cfg, e):
        holder["p"] = TimedHold(e, clock)
        return holder["p"]

    children: list = []
    if processes:
        import subprocess

        roles = ("policy",) if source == "sensors" else ("perception", "policy")
        children = [subprocess.Popen([sys.executable, __file__, "--child", role,
                                      "--embodiment", embodiment,
                                      "--observation-source", source])
                    for role in roles]
        per = pol = None
    else:
        per_cfg, pol_cfg = node_configs(embodiment, source)
        per = PerceptionNode(per_cfg, context=context) if source == "topic" else None
        pol = PolicyNode(pol_cfg, policy_factory=factory, context=context)
    drv = rclpy.create_node("bench_driver", context=context)
    sent: dict[float, float] = {}
    recv: dict[float, float] = {}
    def on_chunk(m) -> None:
        key = round(conv.time_to_sec(m.header.stamp), 6)
        recv.setdefault(key, time.perf_counter())
        if clock is not None:
            clock.mark("received", key)

    drv.create_subscription(ActionChunk, "action_chunk", on_chunk, COMMAND_QOS)
    img_pub = drv.create_publisher(Image, cam.topic, 10)
    js_pub = drv.create_publisher(JointState, "joint_states", 10)
    frame = (np.random.default_rng(0).integers(0, 255, (cam.height, cam.width, 3))
             .astype(np.uint8))
    q = (emb.lower + emb.upper) / 2

    def publish_frame() -> tuple[float, float]:
        """joint_states + image stamped now; returns (stamp key, time the image was sent)."""
        stamp = conv.sec_to_time(drv.get_clock().now().nanoseconds * 1e-9)
        js_pub.publish(JointState(header=conv.Header(stamp=stamp), name=emb.joint_names,
                                  position=q.tolist()))
        msg = conv.numpy_to_image(frame, stamp, cam.name)
        key = round(conv.time_to_sec(stamp), 6)
        sent_at = time.perf_counter()
        if clock is not None:
            clock.mark("sent", key)
        img_pub.publish(msg)
        if clock is not None:
            clock.mark("published", key)
        return key, sent_at

    nodes = [n for n in (per, pol, drv) if n is not None]
    # One process: every node on one executor, as ``ate-ros run``. Processes: the driver alone
    # stands for the consumer of the chunks, executor_node, and spins as its main() does.
    if processes:
        executor_kind = "single"
    ex = (SingleThreadedExecutor(context=context) if processes
          else graph_executor(context, executor_kind))
    for n in nodes:
        ex.add_node(n)
    stop_spinning = Future()
    th = threading.Thread(target=ex.spin_until_future_complete, args=(stop_spinning,),
                          daemon=True)
    th.start()
    for lifecycle_node in (per, pol):  # both are lifecycle nodes: bring them to active
        if lifecycle_node is not None:
            lifecycle_node.trigger_configure()
            lifecycle_node.trigger_activate()
    end = time.monotonic() + (60 if processes else 3)
    while img_pub.get_subscription_count() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    if processes:  # wait until the policy process answers (started, configured, active)
        first: dict = {}
        while not first and time.monotonic() < end:
            publish_frame()
            time.sleep(0.2)
            first = dict(recv)
        recv.clear()
    if clock is not None:
        clock.install(per, pol)
    time.sleep(0.5)
    period = 1.0 / rate
    t_start = time.monotonic()
    n_total = frames if not soak_seconds else int(soak_seconds * rate)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    for i in range(n_total):
        key, sent_at = publish_frame()
        sent[key] = sent_at
        delay = t_start + (i + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(1.0)
    cpu_s = time.process_time() - cpu0
    if clock is not None:
        clock.uninstall()
    if processes:  # the hold policy's model time, measured in-process: ~0.02 ms
        model = {k: 0.0 for k in sent}
    else:
        model = holder["p"].model_time
    keys = sorted(k for k in sent if k in recv and k in model)
    e2e = np.array([recv[k] - sent[k] for k in keys])
    overhead = np.array([recv[k] - sent[k] - model[k] for k in keys])
    out = {
        "frames_sent": len(sent), "chunks_received": len(keys), "rate_hz": rate,
        "embodiment": emb.name, "image": f"{cam.width}x{cam.height} rgb8",
        "end_to_end_p50_ms": 1e3 * float(np.percentile(e2e, 50)) if len(e2e) else None,
        "end_to_end_p99_ms": 1e3 * float(np.percentile(e2e, 99)) if len(e2e) else None,
        "overhead_p50_ms": 1e3 * float(np.percentile(overhead, 50)) if len(e2e) else None,
        "overhead_p99_ms": 1e3 * float(np.percentile(overhead, 99)) if len(e2e) else None,
        "model_p50_ms": 1e3 * float(np.median([model[k] for k in keys])) if keys else None,
        "stale_refused": pol.refused_stale if pol else None,
        "processes": "one per node" if processes else "one (all nodes)",
        "observation_source": source,
        "executor": executor_kind,
        # CPU of this process (every thread: nodes, executors, DDS) per frame sent: less
        # disturbed by other load than wall time.
        "process_cpu_per_frame_ms": 1e3 * cpu_s / max(1, len(sent)),
    }
    if clock is not None:
        out["stages"] = clock.breakdown(keys, source)
    if soak_seconds and len(overhead) > 10:
        n = max(1, int(min(60.0, soak_seconds / 4) * rate))
        out["soak_seconds"] = soak_seconds
        out["overhead_first_p50_ms"] = 1e3 * float(np.median(overhead[:n]))
        out["overhead_last_p50_ms"] = 1e3 * float(np.median(overhead[-n:]))
        out["drift_ms"] = out["overhead_last_p50_ms"] - out["overhead_first_p50_ms"]
        out["rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    if pol is not None:
        pol.trigger_deactivate()
    stop_spinning.set_result(None)  # spinning stops before the executor drains its pool
    th.join(timeout=5)
    ex.shutdown()
    if pol is not None:
        pol.stop_inference()
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=context)
    for c in children:
        c.send_signal(__import__("signal").SIGINT)
    for c in children:
        try:
            c.wait(timeout=10)
        except Exception:  # noqa: BLE001
            c.kill()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 frames instead of --frames")
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--embodiment", default="sim_arm6")
    ap.add_argument("--soak", action="store_true", help="long run: drift and queue growth")
    ap.add_argument("--processes", action="store_true",
                    help="perception and policy nodes in processes of their own (as launched)")
    ap.add_argument("--observation-source", choices=OBSERVATION_SOURCES,
                    default=OBSERVATION_SOURCES[0],
                    help="sensors: no perception_node, the policy node reads the image itself")
    ap.add_argument("--executor", choices=GRAPH_EXECUTORS, default=GRAPH_EXECUTORS[0],
                    help="one-process mode: the graph's executor (multi: the earlier one)")
    ap.add_argument("--child", choices=("perception", "policy"), help=argparse.SUPPRESS)
    ap.add_argument("--soak-seconds", type=float, default=600.0)
    ap.add_argument("--out", default=None,
                    help="results JSON (default: benchmarks/results/bench_ros_latency"
                         "[_processes|_soak].json, by mode)")
    a = ap.parse_args()
    if a.child:
        return run_child(a.child, a.embodiment, a.observation_source)
    frames = 100 if a.quick else a.frames
    res = run_bench(frames, a.rate, a.embodiment, a.soak_seconds if a.soak else 0.0,
                    a.processes, a.observation_source, a.executor)
    res["mode"] = "soak" if a.soak else ("quick" if a.quick else "full")
    res["meta"] = result_meta()
    res["goal_overhead_p50_ms"] = 3.0
    res["cpu_count"] = os.cpu_count()
    print(f"{'metric':28s} value")
    for k, v in res.items():
        if k in ("stages", "meta"):
            continue
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if res.get("stages"):
        print(f"\n{'stage':22s} {'wall p50':>9s} {'wall p99':>9s} {'cpu p50':>8s}  (ms)")
        for name, row in res["stages"].items():
            cpu = row.get("cpu_p50_ms")
            print(f"{name:22s} {row['wall_p50_ms']:9.3f} {row['wall_p99_ms']:9.3f} "
                  f"{'' if cpu is None else f'{cpu:8.3f}'}")
    if a.out is None:  # one file per mode, so one mode's run never replaces another's
        suffix = "_soak" if a.soak else ("_processes" if a.processes else "")
        if a.observation_source == "sensors":
            suffix = "_sensors" + suffix
        a.out = str(ROOT / "benchmarks" / "results" / f"bench_ros_latency{suffix}.json")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
