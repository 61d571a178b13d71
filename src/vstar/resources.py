"""A memory estimate made before any work, so that an impossible size fails with advice instead of an OOM kill.

The rule (also in the README): a generation needs

- the weights: ``parameters x bytes per value`` of the dtype;
- the denoiser's activations: ``activation_bytes x (dtype bytes / 4) x batch x frames x height x width``,
  with the batch doubled by classifier-free guidance (``BackboneDefaults.activation_bytes`` per family);
- the decoded video in host memory: float32 frames plus the uint8 copy enlarged by ``upscale``.

With frame-chunked execution (:mod:`vstar.chunking`, ``frame_chunk`` images per spatial call) the activations
count ``CHUNK_RESIDENT x batch x frames + (1 - CHUNK_RESIDENT) x min(batch x frames, frame_chunk)`` images
instead of ``batch x frames``: the layers' inputs and outputs and the skip connections stay whole, the
intermediates of one chunk come and go.

On CUDA the first two must fit in the device's free memory and the third in the host's; on the CPU all three
must fit in the host's available memory. MPS reports no free memory, so no estimate is made there.
``max_memory`` (``--max-memory``, GiB) caps the free memory the check assumes on the device that runs the
model. The figures are estimates (measured on the tiny models, scaled for the full-size ones), so the check
refuses only what the estimate says cannot fit; ``--no-memory-check`` (``check_memory=False``) skips it.
:func:`choose_frame_chunk` (``--frame-chunk auto``) picks the largest chunk the estimate says fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import torch

from vstar.backbones.base import BackboneDefaults

GIB = 2**30
# Share of a denoiser's activation memory that chunked execution leaves proportional to all frames. Measured
# with vstar.resources.peak_allocated (slope of peak memory over 64 -> 128 frames, chunks of 8 and 32
# images, the pipeline's temporal slices): 0.29-0.36 tiny-modelscope, 0.16 toy-shapes, 0.24-0.29
# tiny-videocrafter2; rounded up so that the estimate stays above what was measured.
CHUNK_RESIDENT = 0.4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a generation needs on its device (weights + activations) and in host memory (the video)."""

    device_bytes: int
    host_bytes: int


def activation_images(num_frames: int, batch: int, frame_chunk: int | None = None) -> float:
    """Frames' worth of activations (of one batch item's frame at full size) a denoiser call holds:
    ``batch x frames`` whole, less in chunks of ``frame_chunk`` images (module docstring)."""
    images = batch * num_frames
    if frame_chunk is None or frame_chunk >= images:
        return float(images)
    return CHUNK_RESIDENT * images + (1 - CHUNK_RESIDENT) * frame_chunk


def estimate_memory(defaults: BackboneDefaults, num_frames: int, height: int, width: int, *,
                    batch: int, dtype: torch.dtype, upscale: int = 1, on_cpu: bool = True,
                    frame_chunk: int | None = None, weights_loaded: bool = False,
                    offload: str | None = None) -> MemoryEstimate:
    """The estimate of the module docstring; ``batch`` counts the guidance branches (2 with CFG);
    ``weights_loaded``: the weights are already in memory (no longer free), so they are not counted.
    ``offload`` (:mod:`vstar.offload`, on a GPU): the weights wait in host memory and the device holds the
    largest part (``"model"``, ``BackboneDefaults.largest_part``) or a layer at a time (``"sequential"``)."""
    value_bytes = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    pixels = num_frames * height * width
    activations = activation_images(num_frames, batch, frame_chunk) * height * width
    weights = 0 if weights_loaded else defaults.parameters * value_bytes
    on_device = {None: weights, "model": (defaults.largest_part or defaults.parameters) * value_bytes,
                 "sequential": 0}[offload if not on_cpu else None]
    model = on_device + defaults.activation_bytes * value_bytes / 4 * activations
    video = pixels * 3 * 4 + pixels * upscale * upscale * 3
    if on_cpu:
        return MemoryEstimate(0, int(model + video))
    return MemoryEstimate(int(model), int(video + (weights if offload else 0)))


def free_memory(device: torch.device) -> tuple[int | None, int]:
    """``(free device bytes or None when not on CUDA, available host bytes)``."""
    host = psutil.virtual_memory().available
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, host
    return None, host


def check_max_memory(max_memory: float | None, name: str = "max_memory") -> None:
    """Refuse a ``max_memory`` that is not None or a finite positive number of GiB (``name``: how the
    message calls it, e.g. the CLI's ``--max-memory``)."""
    if max_memory is None:
        return
    if isinstance(max_memory, bool) or not isinstance(max_memory, int | float) or not 0 < max_memory < math.inf:
        raise ValueError(f"{name} must be a positive number of GiB, got {max_memory!r}")


def _free_with_cap(device: torch.device, max_memory: float | None) -> tuple[int | None, int]:
    """:func:`free_memory`, the model's device capped at ``max_memory`` GiB (the host on the CPU)."""
    check_max_memory(max_memory)
    free_device, free_host = free_memory(device)
    if max_memory is not None:
        cap = int(max_memory * GIB)
        if free_device is not None:
            free_device = min(free_device, cap)
        else:
            free_host = min(free_host, cap)
    return free_device, free_host


def _estimated(defaults: BackboneDefaults, device: torch.device) -> bool:
    return defaults.activation_bytes > 0 and device.type != "mps"


def _fit_test(defaults: BackboneDefaults, height: int, width: int, device: torch.device,
              free: tuple[int | None, int], **estimate: object) -> Callable[[int, int | None], bool]:
    """``fits(num_frames, frame_chunk)``: whether that run's estimate fits in ``free`` (device, host) bytes."""
    free_device, free_host = free

    def fits(num_frames: int, frame_chunk: int | None) -> bool:
        need = estimate_memory(defaults, num_frames, height, width, on_cpu=device.type == "cpu",
                               frame_chunk=frame_chunk, **estimate)
        return need.host_bytes <= free_host and (free_device is None or need.device_bytes <= free_device)

    return fits


def _largest(fits: Callable[[int], bool], high: int) -> int:
    """The largest ``n`` in ``1..high`` with ``fits(n)`` (true up to some ``n``, false above), 0 when none."""
    low = 0
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def choose_frame_chunk(defaults: BackboneDefaults, num_frames: int, height: int, width: int, *, batch: int,
                       dtype: torch.dtype, device: torch.device, upscale: int = 1, max_memory: float | None = None,
                       weights_loaded: bool = False, offload: str | None = None) -> int | None:
    """The largest ``frame_chunk`` (images per spatial call) whose estimate fits in free memory (at most
    ``max_memory`` GiB): None when the whole forward fits or nothing is estimated (unknown footprint, MPS),
    1 when not even that fits (the memory check then says so)."""
    if not _estimated(defaults, device) or not defaults.frame_chunking:
        return None
    fits = _fit_test(defaults, height, width, device, _free_with_cap(device, max_memory), batch=batch,
                     dtype=dtype, upscale=upscale, weights_loaded=weights_loaded, offload=offload)
    if fits(num_frames, None):
        return None
    return max(1, _largest(lambda chunk: fits(num_frames, chunk), batch * num_frames - 1))


def check_memory(defaults: BackboneDefaults, name: str, num_frames: int, height: int, width: int, *,
                 batch: int, dtype: torch.dtype, device: torch.device, upscale: int = 1,
                 frame_chunk: int | None = None, max_memory: float | None = None,
                 weights_loaded: bool = False, offload: str | None = None) -> None:
    """Raise a ValueError with the largest frame count that fits (and whether ``frame_chunk='auto'`` makes
    this one fit) when the estimate exceeds free memory (at most ``max_memory`` GiB)."""
    if not _estimated(defaults, device):
        return
    estimate = {"batch": batch, "dtype": dtype, "upscale": upscale, "weights_loaded": weights_loaded,
                "offload": offload}
    free_device, free_host = free = _free_with_cap(device, max_memory)
    fits = _fit_test(defaults, height, width, device, free, **estimate)
    if fits(num_frames, frame_chunk):
        return
    need = estimate_memory(defaults, num_frames, height, width, on_cpu=device.type == "cpu",
                           frame_chunk=frame_chunk, **estimate)
    most = _largest(lambda frames: fits(frames, frame_chunk), num_frames - 1)
    where = (f"{need.device_bytes / GIB:.1f} GiB on {device} (free {free_device / GIB:.1f} GiB) and "
             if free_device is not None else "")
    chunked = f" in chunks of {frame_chunk} frames" if frame_chunk is not None else ""
    advice = (f"at most {most} frames fit at {height}x{width}{chunked}" if most >= 2
              else f"not even 2 frames fit at {height}x{width}{chunked}: use a smaller size")
    if frame_chunk is None and defaults.frame_chunking and \
            _largest(lambda chunk: fits(num_frames, chunk), batch * num_frames - 1) >= 1:
        advice += "; --frame-chunk auto (frame_chunk='auto') makes this size fit"
    if device.type == "cuda" and offload != "sequential" and not weights_loaded:
        lighter = next((mode for mode in ("model", "sequential")[offload == "model":]
                        if _fit_test(defaults, height, width, device, free, **(estimate | {"offload": mode}))(
                            num_frames, frame_chunk)), None)
        if lighter is not None:
            advice += f"; --offload {lighter} (keeping the weights in CPU memory) makes this size fit"
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


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring :func:`peak_memory` anew (on CUDA; the CPU figure is the process's peak so far)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Bytes: on CUDA the most torch's allocator held on ``device`` since :func:`reset_peak_memory`; elsewhere
    the peak resident memory of this process so far (what ``vstar batch`` reports per item)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
