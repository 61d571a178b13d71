"""Measure ``activation_bytes`` of the registry: peak memory of a generation per output pixel, frame and batch item.

Each (model, frames) runs in a fresh process (one denoising step, TAR off, latents only) and reports its
peak resident memory; the slope between two frame counts, divided by the CFG batch and the frame size, is the
activation memory per pixel at float32 that :mod:`vstar.resources` uses.

    OMP_NUM_THREADS=1 python benchmarks/memory_per_pixel.py tiny-modelscope toy-shapes --frames 8 64
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

CHILD = """
import json, resource, sys, torch
torch.set_flush_denormal(True)
from vstar.pipeline import VSTARPipeline
pipe = VSTARPipeline.from_pretrained(sys.argv[1])
d = pipe.backbone.defaults
pipe("a red circle", num_frames=int(sys.argv[2]), num_inference_steps=1, progress=False, tar=None,
     output_type="latent", check_memory=False)
batch = 2 if d.guidance_scale > 1 else 1
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "batch": batch,
                  "pixels": d.height * d.width}))
"""


def peak(model: str, frames: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(frames)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--frames", nargs=2, type=int, default=(8, 64))
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print("model, frames, peak MiB, activation bytes per pixel (float32)")
    for model in args.models:
        low, high = (peak(model, f) for f in args.frames)
        slope = (high["peak_kib"] - low["peak_kib"]) * 1024 / (args.frames[1] - args.frames[0])
        per_pixel = slope / (low["batch"] * low["pixels"])
        print(f"{model}, {args.frames[0]}->{args.frames[1]}, {low['peak_kib'] / 1024:.0f}->"
              f"{high['peak_kib'] / 1024:.0f}, {per_pixel:.0f}")


if __name__ == "__main__":
    main()
