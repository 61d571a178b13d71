"""Initial-noise optimization (paper supplement B) on the embedded toy model, measured in one run.

    python benchmarks/noise_optimization.py [--seeds 3] [--opt-steps 20] [--frames 16] [--cost-frames 16,48]

References are vstar's procedural clips: a red circle moving right and bouncing (motion), and a red circle
turning into a blue one (a colour change). For each reference and seed, one video is sampled from plain noise
and one from noise optimized toward the reference's temporal attention (same seed, same prompt, VSP and TAR
64D1 as configured by default). Reported, as means over seeds:

- the attention loss ``||A_ref,t - A_t||`` at level 0 before and after the optimization;
- the band score (expected frame distance, :func:`vstar.analysis.band_score`) of the level-0 attention
  recorded while sampling (prompt branch, all steps), beside the reference's at the optimization timestep;
- ``flicker``, ``flow_magnitude`` and ``change_from_first`` (last frame) of the sampled videos and of the
  reference itself, and in how many seeds the optimized video is closer to the reference than the plain one;
- the cost at each of ``--cost-frames``: CPU seconds of one optimization iteration (a denoiser pass with
  gradients from level 0 and its backward pass) and the peak allocator memory of an optimization, beside one
  plain sampling step (a denoiser call on a classifier-free-guidance batch of 2) and the peak memory of
  sampling; plain VSTAR costs nothing more.
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import numpy as np
import torch
from measure import MiB, interleaved_medians, machine, peak_bytes, setup

from vstar import VSTARPipeline
from vstar.analysis import band_score, change_from_first, flicker, flow_magnitude
from vstar.config import GenerationConfig
from vstar.noise import optimize_initial_noise
from vstar.synopsis import make_synopsis
from vstar.toy.scenes import Motion, Scene, render_clip, render_transition

RED_CIRCLE = Scene("circle", "red", "large", "black", "center")
BLUE_CIRCLE = Scene("circle", "blue", "large", "black", "center")


def references(num_frames: int) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (uint8 clip ``(F, 32, 32, 3)``, prompt)."""
    moving = render_clip(RED_CIRCLE, num_frames, motion=Motion(dx=1.5))
    change = render_transition(RED_CIRCLE, BLUE_CIRCLE, num_frames)
    return {
        "moving circle": ((moving * 255).round().astype(np.uint8), "a red circle on a black background"),
        "colour change": ((change * 255).round().astype(np.uint8),
                          "a red circle on a black background turning into a blue circle"),
    }


def video_measures(frames: np.ndarray) -> dict[str, float]:
    return {"flicker": flicker(frames), "flow": flow_magnitude(frames),
            "change_last": float(change_from_first(frames)[-1])}


def sample(pipe: VSTARPipeline, states: list[str], config: GenerationConfig,
           latents: torch.Tensor | None) -> tuple[np.ndarray, float]:
    """One video ``(F, H, W, 3)`` and the band score of its level-0 attention (prompt branch, all steps)."""
    out = pipe(synopsis=states, config=config, latents=latents, record_attention=True, progress=False)
    return out.frames[0], float(band_score(out.attention.by_level()[0]))


def quality(pipe: VSTARPipeline, args: argparse.Namespace) -> None:
    config = GenerationConfig(num_frames=args.frames)
    print(f"\n{args.frames} frames, {args.seeds} seeds, {args.opt_steps} Adam steps (lr {args.lr}, kl weight "
          f"{args.kl_weight}, t = {args.timestep}), then 25 DDIM steps with VSP + TAR 64D1; means over seeds")
    header = (f"{'reference':<14} {'noise':<10} {'attn loss':>17} {'band gen':>8} {'band ref':>8} {'flicker':>8} "
              f"{'flow':>6} {'change':>7}")
    print(header)
    for name, (clip, prompt) in references(args.frames).items():
        states = make_synopsis(prompt, backend="rules").states
        rows: dict[str, list[dict[str, float]]] = {"plain": [], "optimized": []}
        for seed in range(args.seeds):
            seeded = config.replace(seed=seed)
            opt = optimize_initial_noise(pipe, clip, synopsis=states, config=seeded, num_steps=args.opt_steps,
                                         lr=args.lr, kl_weight=args.kl_weight, timestep=args.timestep,
                                         progress=False)
            reference_band = float(band_score(opt.reference_maps.mean(0)))
            for label, latents in (("plain", None), ("optimized", opt.latents)):
                frames, band = sample(pipe, states, seeded, latents)
                history = opt.history[0 if label == "plain" else -1]
                rows[label].append({"attention": history["attention"], "band": band, "band_ref": reference_band,
                                    **video_measures(frames)})
        reference = video_measures(clip)
        for label, entries in rows.items():
            mean = {key: statistics.mean(e[key] for e in entries) for key in entries[0]}
            print(f"{name:<14} {label:<10} {mean['attention']:>17.4f} {mean['band']:>8.3f} {mean['band_ref']:>8.3f} "
                  f"{mean['flicker']:>8.4f} {mean['flow']:>6.3f} {mean['change_last']:>7.4f}")
        print(f"{name:<14} {'reference':<10} {'':>17} {'':>8} {'':>8} {reference['flicker']:>8.4f} "
              f"{reference['flow']:>6.3f} {reference['change_last']:>7.4f}")
        pairs = list(zip(rows["plain"], rows["optimized"], strict=True))
        targets = [{"band": plain["band_ref"], **reference} for plain, _ in pairs]
        closer = {key: sum(abs(o[key] - t[key]) < abs(p[key] - t[key]) for (p, o), t in zip(pairs, targets, strict=True))
                  for key in targets[0]}
        print(f"{name:<14} seeds where the optimized video is closer to the reference: "
              + ", ".join(f"{key} {count}/{args.seeds}" for key, count in closer.items()))


def cost(pipe: VSTARPipeline, args: argparse.Namespace) -> None:
    print("\ncost (CPU seconds per iteration or step: the difference of 3 and 1, halved, median of interleaved rounds; "
          "peak allocator memory above the weights)")
    clip, prompt = references(max(args.cost_frames))["moving circle"]
    for frames in args.cost_frames:
        config = GenerationConfig(num_frames=frames, seed=0)
        calls = {}
        for steps in (1, 3):
            calls[f"opt{steps}"] = partial(optimize_initial_noise, pipe, clip, prompt, config=config, num_steps=steps,
                                           progress=False)
            calls[f"gen{steps}"] = partial(pipe, prompt, config=config.replace(num_inference_steps=steps),
                                           output_type="latent", progress=False)
        times = interleaved_medians(calls, rounds=args.rounds)
        iteration, step = (times["opt3"] - times["opt1"]) / 2, (times["gen3"] - times["gen1"]) / 2
        memory = {"optimization": peak_bytes(calls["opt1"]), "sampling": peak_bytes(calls["gen1"])}
        print(f"{frames:>3} frames: optimization iteration {iteration:.3f} s, {memory['optimization'] / MiB:.1f} MiB "
              f"peak; plain sampling step {step:.3f} s, {memory['sampling'] / MiB:.1f} MiB peak; {args.opt_steps} "
              f"iterations = {args.opt_steps * iteration / step:.1f} sampling steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--opt-steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--kl-weight", type=float, default=1.0)
    parser.add_argument("--timestep", type=int, default=400)
    parser.add_argument("--cost-frames", type=lambda s: [int(v) for v in s.split(",")], default=[16, 48])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    setup(args.threads)
    print(machine())
    pipe = VSTARPipeline.from_pretrained("toy-shapes", device="cpu")
    quality(pipe, args)
    cost(pipe, args)


if __name__ == "__main__":
    main()
