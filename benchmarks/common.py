"""Shared benchmark plumbing: the machine's measured matmul peak, conv FLOP counts, timing
and peak memory. Benchmarks print figures; they never assert on time."""

from __future__ import annotations

import json
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import torch

from artconv.device import synchronize
from artconv.nets.extractor import FeatureExtractor


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int | None = None,
                       seconds: float = 1.0) -> float:
    """Best achieved GFLOP/s of an n x n matmul: the ceiling the engines are compared to."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def conv_gflop(fx: FeatureExtractor, size: tuple[int, int], deepest: str,
               backward: bool = True) -> float:
    """Forward conv GFLOP up to `deepest`; x2 with the input-gradient backward (the
    weight gradients are not computed: the network is frozen)."""
    total = sum(i.gflops for i in fx.describe(size) if fx.layer_names.index(i.name)
                <= fx.layer_names.index(deepest))
    return total * (2 if backward else 1)


def time_it(fn: Callable[[], Any], device: torch.device, repeats: int = 3,
            warmup: int = 1) -> float:
    """Median seconds of `fn()` after warm-up."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated by torch. CPU: the process's peak RSS (monotonic, so run
    configurations whose peaks you compare in separate processes)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(rows: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
                clock: str = "wall") -> dict[str, list[float]]:
    """Seconds of each function, timed in turn (ABAB...) so that load from other processes
    hits them alike; one warm-up call each first. `clock="cpu"`: this process's CPU time
    instead of wall time (with one thread, the work done, whatever else runs; CPU only)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t = now()
            fn()
            synchronize(device)
            times[name].append(now() - t)
    return times
