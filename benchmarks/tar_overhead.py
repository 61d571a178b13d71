"""What TAR costs: time and peak memory of one denoiser forward with TAR presets against TAR off.

    python benchmarks/tar_overhead.py [--models tiny-modelscope toy-shapes] [--frames 16 64 128 256]
                                      [--presets 64D1 64D1_32D8] [--rounds 5] [--threads 1] [--csv FILE]
    python benchmarks/tar_overhead.py --full modelscope videocrafter2 --latent 8 --frames 16 64
    python benchmarks/tar_overhead.py --device cuda --dtype float16 --full modelscope videocrafter2

One forward is a CFG batch of 2 videos at the model's default size, timestep 500. Every round runs TAR off,
each preset, and the first preset installed but inactive (a later denoising step) in turn, after a warm-up
round; the table shows medians and the ratios to TAR off. ``attn s`` is the time spent inside all temporal
attention processors (stock or TAR) during one forward, and ``extra`` = (attn s - attn s of TAR off) / the
forward time of TAR off: TAR's own cost as a fraction of a forward. On a shared machine whole forwards vary
by several percent from round to round; ``extra`` varies far less. Peak memory is the most the allocator
held during one forward above what it held before (weights and inputs are not counted; see ``measure.py``).

``--full`` builds full-size architectures from their configs with random weights (the ModelScope UNet3D of
``ali-vilab/text-to-video-ms-1.7b`` and the VideoCrafter2 port; about 5.6 GB each in float32) and runs them at
``--latent`` latent pixels a side (their native 32x32 and 40x64 latents on a GPU).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from measure import MiB, interleaved_medians, machine, peak_bytes, seconds, setup
from torch import nn

from vstar import TARState, apply_tar, remove_tar
from vstar.backbones import load_backbone
from vstar.conditioning import cfg_context
from vstar.temporal_attention import temporal_attention_layers


@dataclass
class Subject:
    """A denoiser and how to call it once on ``num_frames`` frames (inputs made once, outside the timing)."""

    name: str
    model: nn.Module  # what apply_tar takes
    make_call: Callable[[int], Callable[[], object]]


def backbone_subject(name: str, device: str, dtype: torch.dtype) -> Subject:
    backbone = load_backbone(name, device=device).to(dtype)
    d = backbone.defaults
    text = backbone.encode_text(["a red circle turning into a blue square", ""])

    def make_call(num_frames: int) -> Callable[[], object]:
        latents = torch.randn(backbone.latent_shape(2, num_frames, d.height, d.width), device=device, dtype=dtype)
        context = cfg_context(text[:1].expand(num_frames, -1, -1), text[1:].expand(num_frames, -1, -1))
        t = torch.tensor(500, device=device)
        return lambda: backbone.model_output(latents, t, context, fps=d.cond_fps)

    return Subject(f"{name} {d.height}x{d.width}", backbone, make_call)


def full_unet(name: str) -> nn.Module:
    """A full-size architecture with random weights (no download)."""
    if name == "modelscope":
        from diffusers import UNet3DConditionModel

        return UNet3DConditionModel(  # unet/config.json of ali-vilab/text-to-video-ms-1.7b
            sample_size=32, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            layers_per_block=2, cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32,
        )
    if name == "videocrafter2":
        from vstar.backbones.videocrafter2 import VideoCrafter2UNet

        return VideoCrafter2UNet()  # the defaults are t2v 512 v2.0
    raise ValueError(f"--full knows modelscope and videocrafter2, got {name!r}")


def full_subject(name: str, latent: tuple[int, int], device: str, dtype: torch.dtype) -> Subject:
    torch.manual_seed(0)
    unet = full_unet(name).to(device=device, dtype=dtype).eval()
    context = torch.randn(2, 77, 1024, device=device, dtype=dtype)  # one text per video, as the UNets take

    def make_call(num_frames: int) -> Callable[[], object]:
        latents = torch.randn(2, 4, num_frames, *latent, device=device, dtype=dtype)
        return lambda: unet(latents, 500, encoder_hidden_states=context)

    return Subject(f"{name} (full size, random weights) latent {latent[0]}x{latent[1]}", unet, make_call)


def settings(model: nn.Module, presets: list[str]) -> dict[str, Callable[[], object]]:
    """How to install each setting: TAR off, each preset, and the first preset while inactive."""

    def install(preset: str | None, active: bool = True) -> Callable[[], object]:
        return lambda: remove_tar(model) if preset is None else apply_tar(model, preset, TARState(active=active))

    out = {"off": install(None)}
    out.update({preset: install(preset) for preset in presets})
    out[f"{presets[0]} inactive"] = install(presets[0], active=False)
    return out


class AttentionClock:
    """Seconds spent in a model's temporal attention processors during the calls since :meth:`reset`.

    Whole forwards on a shared machine vary by several percent between rounds; the time inside the layers
    that TAR replaces, against the same layers' stock time, measures TAR's own cost with far less noise.
    """

    def __init__(self, model: nn.Module, device: str):
        self.model, self.device, self.seconds = model, device, 0.0

    def attach(self) -> None:
        for layer in temporal_attention_layers(self.model):
            layer.set_processor(_Timed(layer.processor, self))

    def detach(self) -> None:
        for layer in temporal_attention_layers(self.model):
            if isinstance(layer.processor, _Timed):
                layer.set_processor(layer.processor.inner)


class _Timed:
    """Wraps a processor and adds the seconds of every call to a clock."""

    def __init__(self, inner: Any, clock: AttentionClock):
        self.inner, self.clock = inner, clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = []
        self.clock.seconds += seconds(lambda: result.append(self.inner(*args, **kwargs)), self.clock.device)
        return result[0]


def measure(subject: Subject, frames: list[int], presets: list[str], rounds: int, device: str) -> list[dict]:
    rows = []
    installs = settings(subject.model, presets)
    clock = AttentionClock(subject.model, device)
    for num_frames in frames:
        call = subject.make_call(num_frames)
        attention: dict[str, list[float]] = {name: [] for name in installs}

        def timed_call(name: str, call: Callable[[], object] = call,
                       attention: dict[str, list[float]] = attention) -> Callable[[], object]:
            def run() -> None:
                clock.seconds = 0.0
                call()
                attention[name].append(clock.seconds)
            return run

        def timed_install(name: str) -> Callable[[], object]:
            return lambda: (clock.detach(), installs[name](), clock.attach())

        with torch.no_grad():
            times = interleaved_medians({name: timed_call(name) for name in installs}, rounds, warmup=1,
                                        device=device, prepare={name: timed_install(name) for name in installs})
            clock.detach()
            peaks = {}
            for name, install in installs.items():
                install()
                peaks[name] = peak_bytes(call, device)
        remove_tar(subject.model)
        inside = {name: statistics.median(values[1:]) for name, values in attention.items()}  # after the warm-up
        for name in installs:
            rows.append({"model": subject.name, "frames": num_frames, "tar": name, "seconds": times[name],
                         "time_ratio": times[name] / times["off"], "attention_seconds": inside[name],
                         "attention_ratio": inside[name] / inside["off"],
                         "extra_per_forward": (inside[name] - inside["off"]) / times["off"],
                         "peak_mib": peaks[name] / MiB, "memory_ratio": peaks[name] / peaks["off"]})
        print_rows(rows[-len(installs):])
    return rows


HEADER = (f"{'frames':>6} {'TAR':>18} {'s/forward':>10} {'x off':>7} {'attn s':>8} {'x off':>7} "
          f"{'extra':>7} {'peak MiB':>10} {'x off':>7}")


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print(f"{row['frames']:>6} {row['tar']:>18} {row['seconds']:>10.4f} {row['time_ratio']:>7.3f} "
              f"{row['attention_seconds']:>8.4f} {row['attention_ratio']:>7.3f} {row['extra_per_forward']:>+7.3f} "
              f"{row['peak_mib']:>10.1f} {row['memory_ratio']:>7.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["tiny-modelscope", "toy-shapes"],
                        help="registered backbones (tiny ones run offline)")
    parser.add_argument("--full", nargs="*", default=[], choices=["modelscope", "videocrafter2"],
                        help="full-size architectures with random weights")
    parser.add_argument("--latent", type=int, nargs="+", default=None,
                        help="latent height [width] of --full models (default 8 on CPU, native on CUDA)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 128, 256])
    parser.add_argument("--presets", nargs="+", default=["64D1", "64D1_32D8"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    args = parser.parse_args()
    setup(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine())
    print(f"one forward = CFG batch of 2, {args.dtype} on {args.device}, median of {args.rounds} interleaved rounds "
          "after a warm-up; peak = allocator memory above the inputs and weights")
    subjects = [lambda name=name: backbone_subject(name, args.device, dtype) for name in args.models]
    for name in args.full:
        native = {"modelscope": (32, 32), "videocrafter2": (40, 64)}[name]
        latent = tuple(args.latent * 2)[:2] if args.latent else (native if args.device != "cpu" else (8, 8))
        subjects.append(lambda name=name, latent=latent: full_subject(name, latent, args.device, dtype))
    rows = []
    for build in subjects:
        subject = build()
        print(f"\n{subject.name}\n{HEADER}")
        rows += measure(subject, args.frames, args.presets, args.rounds, args.device)
        del subject
    if args.csv:
        with open(args.csv, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
