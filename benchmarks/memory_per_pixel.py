"""Measure ``activation_bytes`` of the registry: peak memory of a generation per output pixel, frame and batch item.

Each (model, frames) runs in a fresh process (one denoising step, TAR off, latents only) and reports its
peak resident memory; the slope between two frame counts, divided by the CFG batch and the frame size, is the
activation memory per pixel at float32 that :mod:`vstar.resources` uses.

    OMP_NUM_THREADS=1 python benchmarks/memory_per_pixel.py tiny-modelscope toy-shapes --frames 8 64
    OMP_NUM_THREADS=1 python benchmarks/memory_per_pixel.py tiny-wan tiny-wan2.2-ti2v --frames 17 1025

``--full`` measures full-size Wan transformers instead (the published configs with random weights, no
download; ``--layers`` blocks, default 1: the peak of a no-grad call falls inside one block, so more blocks
add weights, not activations), in this process, with the allocator's peak (``vstar.resources.peak_allocated``)
rather than the resident set: one CFG-batch call with the per-frame text of 3 synopsis states, counting what
the pipeline holds during it (the states interpolated over the latent frames, the CFG context, the latents)
and not the weights. The size is the model's default unless ``--size`` is given.

    OMP_NUM_THREADS=1 python benchmarks/memory_per_pixel.py --full wan2.1-t2v-1.3b wan2.2-ti2v-5b --frames 9 17
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from measure import machine, setup

CHILD = """
import json, resource, sys, torch
torch.set_flush_denormal(True)
from vstar.pipeline import VSTARPipeline
pipe = VSTARPipeline.from_pretrained(sys.argv[1])
d = pipe.backbone.defaults
height, width = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (d.height, d.width)
pipe("a red circle", num_frames=int(sys.argv[2]), height=height, width=width, num_inference_steps=1,
     progress=False, tar=None, output_type="latent", check_memory=False)
batch = 2 if d.guidance_scale > 1 else 1
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "batch": batch,
                  "pixels": height * width}))
"""


def peak(model: str, frames: int, size: tuple[int, int] | None = None) -> dict:
    extra = [str(side) for side in size] if size else []
    out = subprocess.run([sys.executable, "-c", CHILD, model, str(frames), *extra], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def full_peaks(name: str, frames: list[int], size: tuple[int, int] | None, layers: int,
               dtype: str = "float32") -> list[dict]:
    """Allocator peaks of one VSP call of the full-size Wan transformer ``name`` at each frame count, the
    pipeline's per-frame text and latents included (module docstring); cast as ``from_pretrained`` loads it."""
    import torch
    from measure import peak_bytes
    from wan_step import FULL_TEXT_WIDTH, STATES, Subject, cast_as_loaded, full_transformer

    from vstar.backbones.registry import get_spec
    from vstar.backbones.wan import TEXT_LENGTH

    d = get_spec(name).defaults
    height, width = size or (d.height, d.width)
    torch.manual_seed(0)
    text = torch.randn(len(STATES) + 2, TEXT_LENGTH, FULL_TEXT_WIDTH, dtype=getattr(torch, dtype))
    subject = Subject(name, cast_as_loaded(full_transformer(name, layers), text.dtype), height, width, d.vae_scale_factor,
                      d.latent_channels == 48, text[:len(STATES)], text[-2:-1], text[-1:])
    subject.installs()["VSP"]()
    with torch.no_grad():
        return [{"peak_kib": peak_bytes(lambda f=f: subject.forward(subject.inputs(f), per_frame=True)) / 1024,
                 "batch": 2, "pixels": height * width} for f in frames]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="registered models, each run through the pipeline")
    parser.add_argument("--full", nargs="+", default=[], metavar="WAN",
                        choices=["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b"],
                        help="full-size Wan transformers with random weights (the allocator's peak)")
    parser.add_argument("--layers", type=int, default=1, help="blocks of the --full transformers")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="of the --full transformers (the estimate takes float32 figures; Wan runs in bfloat16 "
                        "on GPUs, where its float32 norms and modulation make a call more than half the float32 one)")
    parser.add_argument("--frames", nargs=2, type=int, default=(8, 64))
    parser.add_argument("--size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"),
                        help="instead of each model's default size")
    args = parser.parse_args(argv)
    if not args.models and not args.full:
        parser.error("name at least one model, or --full")
    return args


def per_pixel_line(model: str, frames: tuple[int, int], low: dict, high: dict) -> str:
    slope = (high["peak_kib"] - low["peak_kib"]) * 1024 / (frames[1] - frames[0])
    per_pixel = slope / (low["batch"] * low["pixels"])
    return (f"{model}, {frames[0]}->{frames[1]}, {low['peak_kib'] / 1024:.0f}->{high['peak_kib'] / 1024:.0f}, "
            f"{per_pixel:.0f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.full:
        setup(1)
    print(f"# {machine()}")
    in_dtype = "float32" if args.dtype == "float32" else f"float32; {args.dtype} for --full"
    print(f"model, frames, peak MiB, activation bytes per pixel ({in_dtype})")
    for model in args.models:
        print(per_pixel_line(model, args.frames, *(peak(model, f, args.size) for f in args.frames)), flush=True)
    for model in args.full:
        name = f"{model} (full size; {args.layers} block(s); {args.dtype}; allocator peak)"
        peaks = full_peaks(model, args.frames, args.size, args.layers, args.dtype)
        print(per_pixel_line(name, args.frames, *peaks), flush=True)


if __name__ == "__main__":
    main()
