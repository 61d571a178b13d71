"""A memory estimate made before any work, so that an impossible size fails with advice instead of an OOM kill.

The rule (also in the README): a generation needs

- the weights: ``parameters x bytes per value`` of the dtype;
- the denoiser's activations: ``activation_bytes x (dtype bytes / 4) x batch x frames x height x width``,
  with the batch doubled by classifier-free guidance (``BackboneDefaults.activation_bytes`` per family);
- the decoded video in host memory: float32 frames plus the uint8 copy enlarged by ``upscale``.

On CUDA the first two must fit in the device's free memory and the third in the host's; on the CPU all three
must fit in the host's available memory. MPS reports no free memory, so no estimate is made there. The
figures are estimates (measured on the tiny models, scaled for the full-size ones), so the check refuses only
what the estimate says cannot fit; ``--no-memory-check`` (``check_memory=False``) skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import torch

from vstar.backbones.base import BackboneDefaults

GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a generation needs on its device (weights + activations) and in host memory (the video)."""

    device_bytes: int
    host_bytes: int


def estimate_memory(defaults: BackboneDefaults, num_frames: int, height: int, width: int, *,
                    batch: int, dtype: torch.dtype, upscale: int = 1, on_cpu: bool = True) -> MemoryEstimate:
    """The estimate of the module docstring; ``batch`` counts the guidance branches (2 with CFG)."""
    value_bytes = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    pixels = num_frames * height * width
    model = defaults.parameters * value_bytes + defaults.activation_bytes * value_bytes / 4 * batch * pixels
    video = pixels * 3 * 4 + pixels * upscale * upscale * 3
    if on_cpu:
        return MemoryEstimate(0, int(model + video))
    return MemoryEstimate(int(model), int(video))


def free_memory(device: torch.device) -> tuple[int | None, int]:
    """``(free device bytes or None when not on CUDA, available host bytes)``."""
    host = psutil.virtual_memory().available
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, host
    return None, host


def check_memory(defaults: BackboneDefaults, name: str, num_frames: int, height: int, width: int, *,
                 batch: int, dtype: torch.dtype, device: torch.device, upscale: int = 1) -> None:
    """Raise a ValueError with the largest frame count that fits when the estimate exceeds free memory."""
    if defaults.activation_bytes <= 0 or device.type == "mps":
        return
    on_cpu = device.type == "cpu"
    need = estimate_memory(defaults, num_frames, height, width, batch=batch, dtype=dtype, upscale=upscale,
                           on_cpu=on_cpu)
    free_device, free_host = free_memory(device)
    if need.host_bytes <= free_host and (free_device is None or need.device_bytes <= free_device):
        return
    one = estimate_memory(defaults, 1, height, width, batch=batch, dtype=dtype, upscale=upscale, on_cpu=on_cpu)
    zero = estimate_memory(defaults, 0, height, width, batch=batch, dtype=dtype, upscale=upscale, on_cpu=on_cpu)
    limits = [(free_host - zero.host_bytes) // max(1, one.host_bytes - zero.host_bytes)]
    if free_device is not None:
        limits.append((free_device - zero.device_bytes) // max(1, one.device_bytes - zero.device_bytes))
    fits = max(0, min(limits))
    where = (f"{need.device_bytes / GIB:.1f} GiB on {device} (free {free_device / GIB:.1f} GiB) and "
             if free_device is not None else "")
    advice = (f"at most {fits} frames fit at {height}x{width}" if fits >= 2
              else f"not even 2 frames fit at {height}x{width}: use a smaller size")
    raise ValueError(
        f"{name} at {num_frames} frames of {height}x{width} (upscale {upscale}) needs about {where}"
        f"{need.host_bytes / GIB:.1f} GiB of memory (available {free_host / GIB:.1f} GiB); {advice}, or pass "
        "--no-memory-check (check_memory=False) to try anyway"
    )


def _walk(nodes: list) -> Iterator:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def peak_allocated(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Most bytes torch's allocator held at once during ``fn()`` above what it held when ``fn`` started.

    On CUDA from ``torch.cuda.max_memory_allocated``; on the CPU from the profiler's allocation events
    (the largest running sum of this call's own events: the allocator's running total also keeps what
    earlier profiled calls allocated and freed after their profiler stopped). How the figures behind the
    estimate and the memory claims of TAR and chunked execution are measured.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((node for node in _walk(prof.profiler.kineto_results.experimental_event_tree())
                     if type(node.extra_fields).__name__ == "_ExtraFields_Allocation"), key=lambda n: n.start_time_ns)
    held = peak = 0
    for event in events:
        held += event.extra_fields.alloc_size
        peak = max(peak, held)
    return peak
