"""What the benchmark scripts share: one-thread setup, the machine's description, peak allocator memory,
interleaved A/B timing with a warm-up, the order rotated every round, and the median of several rounds
(``median_ratio``: the median of the per-round ratios, which cancels slow drifts of a shared machine).

Times are CPU seconds of this process on the CPU (so that other programs on the machine do not count) and
wall seconds on CUDA. Peak memory (``peak_bytes``, :func:`vstar.resources.peak_allocated`) is the largest
number of bytes that torch's allocator held at once during a call, over what it held before the call (the
model's weights and the inputs are not counted): from the profiler's allocation events on the CPU, from
``torch.cuda.max_memory_allocated`` on CUDA.

On Linux (glibc) ``setup`` also fixes the C allocator's thresholds (``mallopt``): by default glibc returns
large freed blocks to the system and moves its threshold for doing so as a program runs, so the same
forward pays for fresh zeroed pages (page faults) in some rounds and not in others, depending on what ran
before; with fixed thresholds every variant reuses its memory, as in a long generation.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from vstar.resources import peak_allocated as peak_bytes

__all__ = ["MiB", "interleaved_medians", "interleaved_times", "machine", "median_ratio", "peak_bytes", "seconds",
           "setup"]
MiB = 2**20


def setup(threads: int = 1) -> None:
    """One intra-op thread unless asked otherwise (the ratios are then free of thread contention); flush
    denormals (tiny random models hit them, which makes CPU times 10-100x slower and noisy)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    steady_allocator()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def steady_allocator() -> bool:
    """Keep freed memory in the process (no trimming, large blocks from the heap, not fresh mappings), so
    that page faults do not depend on what ran before; True where glibc's ``mallopt`` is there."""
    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 2**25) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


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


def interleaved_times(variants: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                      device: str | torch.device = "cpu",
                      prepare: Mapping[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each variant in each of ``rounds`` rounds, after ``warmup`` untimed rounds. Every
    round runs every variant once, starting one later each round (A B C, B C A, C A B, ...), so that slow
    drifts of the machine and the position in a round hit every variant alike. ``prepare[name]``, if given,
    runs untimed before each call of that variant (e.g. to install its settings)."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if prepare and name in prepare:
                prepare[name]()
            elapsed = seconds(variants[name], device)
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def interleaved_medians(variants: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1,
                        device: str | torch.device = "cpu",
                        prepare: Mapping[str, Callable[[], object]] | None = None) -> dict[str, float]:
    """Median seconds per call of each variant of :func:`interleaved_times`."""
    times = interleaved_times(variants, rounds, warmup, device, prepare)
    return {name: statistics.median(values) for name, values in times.items()}


def median_ratio(times: Mapping[str, list[float]], name: str, base: str) -> float:
    """The median over rounds of ``name``'s time over ``base``'s in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[base], strict=True))


def write_csv(rows: list[dict[str, object]], path: str) -> None:
    """The rows as a CSV file with a header (the keys of the first row)."""
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def add_run_options(parser: argparse.ArgumentParser, rounds: int = 5, dtype: str | None = None,
                    dtype_help: str | None = None) -> None:
    """The options every timing script shares: --rounds, --threads, --device, --dtype (default ``dtype``) and
    --csv."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=dtype, choices=["float32", "float16", "bfloat16"], help=dtype_help)
    parser.add_argument("--csv", help="also write the rows to this CSV file")
