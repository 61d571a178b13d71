"""What each TAR setting does on a video transformer: band score and frame-to-frame change on tiny-wan.

    python benchmarks/wan_presets.py [--frames 17 41 81] [--videos 3] [--steps 10] [--csv FILE]

For each frame count and each TAR preset (blocks, sigma in latent frames, strength; TAR off first), generate
``--videos`` videos (seeds 0, 1, ...; one prompt per seed, TAR active in the default 56% of the steps) with
the recorder on, and report, as ``benchmarks/toy_analysis.py`` does for the toy model, means over the
videos of:

- ``band``: the band score of the recorded frame maps (expected latent-frame distance each query frame's
  tokens attend over, ``sum_b A[a, b] |a - b|``; 0 = own frame only), over the blocks TAR acts on (all blocks
  for TAR off), averaged over the steps;
- ``band active``: the same over the steps where TAR acts only;
- ``latent step``: frame-to-frame change of the final latents, ``mean |z[l+1] - z[l]| / mean |z|``;
- ``change``: mean change from the first decoded frame, ``flicker``: mean absolute difference of neighbouring
  decoded frames (``vstar.analysis``).

tiny-wan has random weights: the numbers say what a setting does to the attention and to the video's
frame-to-frame change in a transformer of Wan's architecture, not how a trained Wan looks.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from measure import machine, setup, write_csv

from vstar import VSTARPipeline
from vstar.analysis import band_score, change_from_first, flicker

PROMPTS = ("a red ball rolling across a table", "a city street from day to night", "a flower opening in the sun",
           "waves breaking on a beach at sunset", "a candle burning down")
PRESETS = ("off", "b0D1", "b0D2", "b0D4", "b1D2", "b0-1D1", "b0-1D2", "b0-1D4", "b0-1D2S0.5")


def scores(pipe: VSTARPipeline, out: object, blocks: list[int] | None, active_steps: int) -> dict[str, float]:
    """The measures of one generation (``out``: a :class:`vstar.VSTAROutput` of latents with its recorder)."""
    recorder = out.attention
    names = [name for name, level in recorder.levels.items() if blocks is None or level in blocks]
    per_step = [torch.stack([recorder.per_step[name][step] for name in names]).mean(0)
                for step in range(len(recorder.per_step[names[0]]))]
    latents = out.frames.float()  # (1, C, L, h, w)
    step = (latents[:, :, 1:] - latents[:, :, :-1]).abs().mean() / latents.abs().mean()
    frames = pipe.backbone.decode_latents(out.frames)[0].permute(0, 2, 3, 1).numpy()  # (F, H, W, 3)
    return {"band": float(np.mean([band_score(m) for m in per_step])),
            "band active": float(np.mean([band_score(m) for m in per_step[:active_steps]])),
            "latent step": float(step), "change": float(change_from_first(frames)[1:].mean()),
            "flicker": flicker(frames)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 41, 81])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    args = parser.parse_args(argv)
    setup()
    print(f"# {machine()}; tiny-wan, {args.steps} steps, {args.videos} videos per row")
    pipe = VSTARPipeline.from_pretrained("tiny-wan")
    rows = []
    for num_frames in args.frames:
        latent = pipe.backbone.defaults.latent_frames(num_frames)
        print(f"\n{num_frames} frames ({latent} latent)\n{'preset':>12} {'band':>7} {'band active':>11} "
              f"{'latent step':>11} {'change':>7} {'flicker':>7}")
        for preset in args.presets:
            tar = None if preset == "off" else preset
            measured = []
            for seed in range(args.videos):
                out = pipe(PROMPTS[seed % len(PROMPTS)], num_frames=num_frames, num_inference_steps=args.steps,
                           tar=tar, generator=torch.Generator().manual_seed(seed), progress=False,
                           record_attention=True, output_type="latent")
                config = out.config.tar
                blocks = sorted(config.sigmas) if config is not None else None
                active = config.active_steps(args.steps) if config is not None else args.steps
                measured.append(scores(pipe, out, blocks, active))
            mean = {key: float(np.mean([m[key] for m in measured])) for key in measured[0]}
            rows.append({"frames": num_frames, "latent_frames": latent, "preset": preset} | mean)
            print(f"{preset:>12} {mean['band']:7.3f} {mean['band active']:11.3f} {mean['latent step']:11.4f} "
                  f"{mean['change']:7.4f} {mean['flicker']:7.4f}")
    if args.csv:
        write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
