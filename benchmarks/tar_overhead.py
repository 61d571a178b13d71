"""Time per denoising step (one CFG batch through the UNet) with TAR on and off, measured in one run.

    python benchmarks/tar_overhead.py [--model tiny-modelscope] [--frames 16 64] [--repeats 5]

Prints the median seconds per step for each setting and the TAR-on / TAR-off ratio. On and off runs are
interleaved so that machine noise hits both alike; ratios, not absolute times, are the result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vstar import apply_tar, remove_tar
from vstar.backbones import load_backbone
from vstar.conditioning import cfg_context


def step_seconds(backbone, num_frames: int, repeats: int, preset: str) -> tuple[float, float]:
    d = backbone.defaults
    scale = backbone.vae_scale_factor
    latents = torch.randn(2, backbone.latent_channels, num_frames, d.height // scale, d.width // scale)
    text = backbone.encode_text(["a red circle", ""])
    context = cfg_context(text[:1].expand(num_frames, -1, -1), text[1:].expand(num_frames, -1, -1))
    t = torch.tensor(500)
    timings: dict[bool, list[float]] = {False: [], True: []}
    with torch.no_grad():
        backbone.model_output(latents, t, context)  # warm-up
        for _ in range(repeats):
            for tar_on in (False, True):
                if tar_on:
                    apply_tar(backbone.unet, preset)
                start = time.perf_counter()
                backbone.model_output(latents, t, context)
                timings[tar_on].append(time.perf_counter() - start)
                remove_tar(backbone.unet)
    return statistics.median(timings[False]), statistics.median(timings[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-modelscope")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tar", default="64D1")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    backbone = load_backbone(args.model, device="cpu")
    d = backbone.defaults
    print(f"model {args.model}, {d.height}x{d.width}, CFG batch of 2, TAR {args.tar}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'frames':>6} {'TAR off s/step':>15} {'TAR on s/step':>14} {'on/off':>7}")
    for num_frames in args.frames:
        off, on = step_seconds(backbone, num_frames, args.repeats, args.tar)
        print(f"{num_frames:>6} {off:>15.4f} {on:>14.4f} {on / off:>7.3f}")


if __name__ == "__main__":
    main()
