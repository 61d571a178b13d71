"""What TAR costs: time and peak memory of one denoiser forward with TAR presets against TAR off.

    python benchmarks/tar_overhead.py [--models tiny-modelscope toy-shapes] [--frames 16 64 128 256]
                                      [--presets 64D1 64D1_32D8] [--rounds 5] [--threads 1] [--csv FILE]
    python benchmarks/tar_overhead.py --full modelscope videocrafter2 --latent 8 --frames 16 64
    python benchmarks/tar_overhead.py --device cuda --dtype float16 --full modelscope videocrafter2

One forward is a CFG batch of 2 videos at the model's default size, timestep 500. Every round runs TAR off,
each preset, and the first preset installed but inactive (a later denoising step) in turn, after a warm-up
round, the order rotated each round; the table shows median seconds and the median of each round's ratio to
TAR off. On a shared machine whole forwards vary by several percent from round to round, so TAR's own cost
is also measured paired: in separate forwards every active TAR layer runs both as TAR and as the stock
processor it replaced, back to back on the same input (alternating which goes first); ``layers s`` is the
TAR layers' seconds per forward, ``x stock`` their ratio to the same layers run stock, and ``paired x off``
= 1 + (TAR - stock seconds) / the forward time of TAR off: TAR/off for a forward whose other layers, the same
code in both, cost the same (``x off``, the whole forwards' ratio, carries the machine's noise; TAR
installed but inactive, which is stock attention, shows its size). Peak memory is the most the allocator
held during one forward above what it held before (weights and inputs are not counted; see ``measure.py``).

``--full`` builds full-size architectures from their configs with random weights (the ModelScope UNet3D of
``ali-vilab/text-to-video-ms-1.7b`` and the VideoCrafter2 port; about 5.6 GB each in float32) and runs them at
``--latent`` latent pixels a side (their native 32x32 and 40x64 latents on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from measure import (
    MiB,
    add_run_options,
    interleaved_times,
    machine,
    median_ratio,
    peak_bytes,
    seconds,
    setup,
    write_csv,
)
from torch import nn

from vstar import TARState, apply_tar, remove_tar
from vstar.backbones import load_backbone
from vstar.conditioning import cfg_context
from vstar.tar import TARProcessor
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
    with torch.device(device):  # built where it runs: random init of 1.4B weights takes 20-40 s on one CPU thread
        unet = full_unet(name)
    unet = unet.to(dtype=dtype).eval()
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


class PairedClock:
    """Runs every active TAR layer of a model twice per call, as TAR and as the stock processor it replaced
    (in alternating order), and adds up the seconds of each.

    Whole forwards on a shared machine vary by several percent between rounds; the two versions of the same
    layer timed back to back on the same input see the same machine, so their difference is TAR's own cost
    with far less noise.
    """

    def __init__(self, model: nn.Module, device: str):
        self.model, self.device = model, device
        self.tar = self.stock = 0.0
        self.calls = 0

    def attach(self) -> None:
        for layer in temporal_attention_layers(self.model):
            if isinstance(layer.processor, TARProcessor) and layer.processor.active:
                layer.set_processor(_Paired(layer.processor, self))

    def detach(self) -> None:
        for layer in temporal_attention_layers(self.model):
            if isinstance(layer.processor, _Paired):
                layer.set_processor(layer.processor.tar)


class _Paired:
    """A TAR processor that also runs its fallback on the same input and times both (see PairedClock)."""

    def __init__(self, tar: TARProcessor, clock: PairedClock):
        self.tar, self.clock = tar, clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = []
        order = ("tar", "stock") if self.clock.calls % 2 else ("stock", "tar")
        self.clock.calls += 1
        for name in order:
            processor = self.tar if name == "tar" else self.tar.fallback
            elapsed = seconds(lambda p=processor: result.append(p(*args, **kwargs)), self.clock.device)
            setattr(self.clock, name, getattr(self.clock, name) + elapsed)
        return result[order.index("tar")]


def paired_seconds(clock: PairedClock, call: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median seconds per forward of the TAR layers as TAR and as stock, after a warm-up forward."""
    per_forward = []
    clock.attach()
    try:
        for _ in range(rounds + 1):
            clock.tar = clock.stock = 0.0
            call()
            per_forward.append((clock.tar, clock.stock))
    finally:
        clock.detach()
    tar, stock = zip(*per_forward[1:], strict=True)
    return statistics.median(tar), statistics.median(stock)


def measure(subject: Subject, frames: list[int], presets: list[str], rounds: int, device: str) -> list[dict]:
    rows = []
    installs = settings(subject.model, presets)
    clock = PairedClock(subject.model, device)
    for num_frames in frames:
        call = subject.make_call(num_frames)
        with torch.no_grad():
            times = interleaved_times(dict.fromkeys(installs, call), rounds, warmup=1, device=device,
                                      prepare=installs)
            peaks, layers = {}, {}
            for name, install in installs.items():
                install()
                peaks[name] = peak_bytes(call, device)
                layers[name] = paired_seconds(clock, call, rounds)
        remove_tar(subject.model)
        off_seconds = statistics.median(times["off"])
        for name in installs:
            tar, stock = layers[name]
            rows.append({"model": subject.name, "frames": num_frames, "tar": name,
                         "seconds": statistics.median(times[name]), "time_ratio": median_ratio(times, name, "off"),
                         "tar_layer_seconds": tar, "layer_ratio": tar / stock if stock else 1.0,
                         "extra_per_forward": (tar - stock) / off_seconds,
                         "paired_time_ratio": 1 + (tar - stock) / off_seconds,
                         "peak_mib": peaks[name] / MiB, "memory_ratio": peaks[name] / peaks["off"]})
        print_rows(rows[-len(installs):])
    return rows


HEADER = (f"{'frames':>6} {'TAR':>18} {'s/forward':>10} {'x off':>7} {'layers s':>9} {'x stock':>8} "
          f"{'paired x off':>12} {'peak MiB':>10} {'x off':>7}")


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print(f"{row['frames']:>6} {row['tar']:>18} {row['seconds']:>10.4f} {row['time_ratio']:>7.3f} "
              f"{row['tar_layer_seconds']:>9.4f} {row['layer_ratio']:>8.3f} {row['paired_time_ratio']:>12.3f} "
              f"{row['peak_mib']:>10.1f} {row['memory_ratio']:>7.3f}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["tiny-modelscope", "toy-shapes"],
                        help="registered backbones (tiny ones run offline)")
    parser.add_argument("--full", nargs="*", default=[], choices=["modelscope", "videocrafter2"],
                        help="full-size architectures with random weights")
    parser.add_argument("--latent", type=int, nargs="+", default=None,
                        help="latent height [width] of --full models (default 8 on CPU, native on CUDA)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 128, 256])
    parser.add_argument("--presets", nargs="+", default=["64D1", "64D1_32D8"])
    add_run_options(parser, dtype='float32')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
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
        write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
