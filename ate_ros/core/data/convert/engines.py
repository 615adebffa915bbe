"""Where the per-bag conversions run: in this process, in a local process pool, or as Ray tasks.

The unit of work is :func:`ate_ros.core.data.convert.pipeline.convert_bag` (one bag -> its
episode files in the staging folder + its manifest report); an engine only decides where each
call runs and returns the reports in input order. Scheduling is left to the engine
(``concurrent.futures`` or Ray); bags are submitted largest first so that a big bag does not
start last and run alone.

Local pool: plain ``fork`` where it is safe, i.e. the caller runs no other Python thread and has
imported nothing that keeps native threads a forked child cannot use (:data:`FORK_UNSAFE`:
torch's OpenMP pool, rclpy's DDS threads, ...): the workers start at once with the converter
already imported (``ate-ros bag2dataset`` is such a caller; numpy's OpenBLAS pool is fork-safe,
it re-creates its threads through ``pthread_atfork``). Otherwise a ``forkserver`` context whose
server imports the converter once (numpy, rosbags, h5py, which ``spawn`` would import again in
every process) and forks each worker from it; ``spawn`` where the platform has neither. The
forkserver costs about half a second before the first bag starts (a new interpreter importing
the converter), most of a 2-worker run's fixed cost (``docs/design_notes.md``). Each worker
limits OpenCV to one thread, since the parallelism is across bags.

Ray (the ``ray`` extra): ``address=None`` starts a local instance for the call and shuts it down
afterwards; ``"auto"``, ``"ray://host:10001"`` or ``host:6379`` join a running cluster
(docs/ray.md). A Ray instance the caller already initialised is used as it is. Every node must
see the bags and the output folder at the same paths (a shared filesystem), and have the same
``ate_ros`` installed. A task that dies (worker crash, node lost) becomes that bag's failed
report, like a bag that fails inside the converter; the other bags are unaffected.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RAY_INSTALL_HINT = "install the Ray extra: pip install 'ate-ros[ray]' (or pip install ray)"

Job = tuple[Any, ...]
"""The positional arguments of one per-bag call (the bag's path first)."""
BagFn = Callable[..., dict[str, Any]]
FailFn = Callable[[Job, str], dict[str, Any]]
"""Builds the failed report of a job whose call never returned (job, reason)."""

_PRELOAD = ["ate_ros.core.data.convert.pipeline", "rosbags.highlevel", "h5py"]

FORK_UNSAFE = ("torch", "rclpy", "tensorflow", "jax", "ray", "grpc")
"""Modules whose import (or use) leaves native threads or locks that a forked child may find
held: with any of them imported the pool uses the forkserver."""


def bag_bytes(path: str | Path) -> int:
    """Size of a bag on disk (a file, or the files of a rosbag2 folder); 0 when unreadable."""
    p = Path(path)
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size
    except OSError:
        return 0


def largest_first(jobs: Sequence[Job]) -> list[int]:
    """Indices of ``jobs`` by bag size, largest first (ties in input order)."""
    sizes = [bag_bytes(j[0]) for j in jobs]
    return sorted(range(len(jobs)), key=lambda i: (-sizes[i], i))


def _limit_threads() -> None:
    """Pool worker initializer: one OpenCV thread per worker (resizing runs in each bag)."""
    try:
        import cv2
    except ImportError:  # the converter only needs OpenCV for compressed or resized frames
        return
    cv2.setNumThreads(1)


def fork_is_safe() -> bool:
    """Whether this process can fork pool workers: no other Python thread is running and no
    module of :data:`FORK_UNSAFE` is imported."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return threading.active_count() == 1 and not any(m in sys.modules for m in FORK_UNSAFE)


def _pool_context() -> multiprocessing.context.BaseContext:
    if fork_is_safe():
        return multiprocessing.get_context("fork")
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Only read when the server starts (once per process); later calls change nothing.
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def run_serial(fn: BagFn, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Each job in this process, in order."""
    return [fn(*job) for job in jobs]


def run_pool(fn: BagFn, jobs: Sequence[Job], workers: int,
             prepare: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Jobs in a local pool of ``workers`` processes; reports in input order.

    Args:
        prepare: Run once in this process before a forked pool starts: what each worker
            would otherwise do on its first job (imports, caches), done once and inherited.
    """
    from concurrent.futures import ProcessPoolExecutor

    workers = min(workers, len(jobs))
    if workers <= 1:
        return run_serial(fn, jobs)
    ctx = _pool_context()
    if prepare is not None and ctx.get_start_method() == "fork":
        prepare()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=_limit_threads) as pool:
        futures = {i: pool.submit(fn, *jobs[i]) for i in largest_first(jobs)}
        return [futures[i].result() for i in range(len(jobs))]


def require_ray() -> Any:
    """The ``ray`` module, or ImportError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"--ray needs Ray, which does not import ({exc}); "
                          f"{RAY_INSTALL_HINT}") from exc
    return ray


def run_ray(fn: BagFn, jobs: Sequence[Job], failed: FailFn, address: str | None = None,
            num_cpus: int | None = None) -> list[dict[str, Any]]:
    """Jobs as Ray tasks (one CPU each); reports in input order.

    Args:
        failed: Report for a job whose task raised instead of returning (worker or node died).
        address: Ray cluster to join (``None``: a local instance for this call, unless Ray is
            initialised already).
        num_cpus: CPUs of the local instance (``None``: all); ignored when joining a cluster.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address, "include_dashboard": False,
                                  "log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
        started = True
    try:
        # max_retries: a task whose worker died is run once more before the bag is failed.
        task = ray.remote(num_cpus=1, max_retries=1)(fn)
        refs = {i: task.remote(*jobs[i]) for i in largest_first(jobs)}
        reports = []
        for i in range(len(jobs)):
            try:
                reports.append(ray.get(refs[i]))
            except ray.exceptions.RayError as exc:
                reason = f"ray task failed ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                logger.error("%s: %s", jobs[i][0], reason)
                reports.append(failed(jobs[i], reason))
        return reports
    finally:
        if started:
            ray.shutdown()
