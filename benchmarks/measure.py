"""What the benchmark scripts share: one-thread setup, the machine's description, peak allocator memory,
interleaved A/B timing with a warm-up and the median of several rounds.

Times are CPU seconds of this process on the CPU (so that other programs on the machine do not count) and
wall seconds on CUDA. Peak memory (``peak_bytes``, :func:`vstar.resources.peak_allocated`) is the largest
number of bytes that torch's allocator held at once during a call, over what it held before the call (the
model's weights and the inputs are not counted): from the profiler's allocation events on the CPU, from
``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from vstar.resources import peak_allocated as peak_bytes

__all__ = ["MiB", "interleaved_medians", "machine", "peak_bytes", "seconds", "setup"]
MiB = 2**20


def setup(threads: int = 1) -> None:
    """One intra-op thread unless asked otherwise (the ratios are then free of thread contention); flush
    denormals (tiny random models hit them, which makes CPU times 10-100x slower and noisy)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def machine() -> str:
    """One line naming the CPU (and GPU), the thread count and the torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu} ({os.cpu_count()} cores){gpu}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, {platform.python_implementation()} {platform.python_version()}")


def seconds(fn: Callable[[], object], device: str | torch.device = "cpu") -> float:
    """Seconds of one call: CPU time of this process on the CPU (other programs' load does not count),
    wall time synchronised with the GPU on CUDA."""
    if torch.device(device).type != "cuda":
        start = time.process_time()
        fn()
        return time.process_time() - start
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(variants: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                        device: str | torch.device = "cpu",
                        prepare: Mapping[str, Callable[[], object]] | None = None) -> dict[str, float]:
    """Median seconds per call of each variant, run in turn in every round (A B C, A B C, ...) after
    ``warmup`` untimed rounds, so that slow drifts of the machine hit every variant alike. ``prepare[name]``,
    if given, runs untimed before each call of that variant (e.g. to install its settings)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(warmup + rounds):
        for name, fn in variants.items():
            if prepare and name in prepare:
                prepare[name]()
            elapsed = seconds(fn, device)
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}
