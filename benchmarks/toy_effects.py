"""Measured effects of VSP and TAR on the embedded toy model (trained on one-state clips), in one run.

    python benchmarks/toy_effects.py [--prompts 20] [--seeds 4] [--long-prompts 6] [--steps 25] [--gif docs/toy.gif]

Every frame is scored by the pixel-space classifier of ``vstar.toy.classifier`` (no learned weights).

- Transition faithfulness (16 frames): share of "X turning into Y" videos whose first 4 frames show X and
  last 4 frames show Y (colour and shape), for the prompt alone on every frame, VSP, and VSP + TAR.
- Long videos (48 and 64 frames, trained on 8-16), VSP with TAR off / on (64D1_32D8): transition success,
  flicker (mean absolute change between consecutive frames, lower is more coherent), state flips (classified
  colour/shape changes between consecutive frames), and change (mean absolute difference between the
  first and last 4 frames).
- A sigma sweep of TAR at level 0 on 48 frames with the same measures.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vstar import VSTARPipeline
from vstar.synopsis import make_synopsis
from vstar.tar import TARConfig
from vstar.toy.classifier import classify_clip, shows
from vstar.toy.scenes import BACKGROUNDS, COLORS, SHAPES, Scene

EDGE = 4  # frames at each end that must show the start / end state


@dataclass(frozen=True)
class Transition:
    start: Scene
    end: Scene

    @property
    def prompt(self) -> str:
        s, e = self.start, self.end
        return f"a {s.color} {s.shape} on a {s.background} background turning into a {e.color} {e.shape}"


def transitions(count: int, seed: int = 0) -> list[Transition]:
    """``count`` distinct transitions that change both colour and shape, in a seeded order."""
    rng = np.random.default_rng(seed)
    pairs = [(c1, s1, c2, s2) for c1, c2 in itertools.permutations(COLORS, 2)
             for s1, s2 in itertools.permutations(SHAPES, 2)]
    chosen = rng.permutation(len(pairs))[:count]
    out = []
    for i in chosen:
        c1, s1, c2, s2 = pairs[i]
        bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
        out.append(Transition(Scene(s1, c1, "large", bg, "center"), Scene(s2, c2, "large", bg, "center")))
    return out


def generate(pipe: VSTARPipeline, t: Transition, seeds: Sequence[int], num_frames: int, steps: int,
             vsp: bool, tar: str | TARConfig | None, interpolation: str = "linear") -> np.ndarray:
    """Videos ``(len(seeds), F, H, W, 3)`` of one transition, one seed per video."""
    states = make_synopsis(t.prompt, backend="rules", cache=False).states if vsp else None
    out = pipe(t.prompt, states, num_frames=num_frames, num_inference_steps=steps, tar=tar, progress=False,
               interpolation=interpolation, num_videos=len(seeds),
               generator=[torch.Generator().manual_seed(s) for s in seeds])
    return out.frames


def scores(videos: np.ndarray, t: Transition) -> dict[str, list[float]]:
    """Per-video measures of a batch of videos of one transition."""
    result: dict[str, list[float]] = {"success": [], "flicker": [], "flips": [], "change": []}
    for video in videos:
        result["success"].append(float(shows(video[:EDGE], t.start) and shows(video[-EDGE:], t.end)))
        result["flicker"].append(float(np.abs(np.diff(video, axis=0)).mean()))
        states = [(s.color, s.shape) for s in classify_clip(video)]
        result["flips"].append(float(sum(a != b for a, b in zip(states, states[1:], strict=False))))
        result["change"].append(float(np.abs(video[:EDGE].mean(0) - video[-EDGE:].mean(0)).mean()))
    return result


def run_condition(pipe: VSTARPipeline, items: Sequence[Transition], seeds: Sequence[int], num_frames: int,
                  steps: int, vsp: bool, tar: str | TARConfig | None, interpolation: str = "linear") -> dict[str, float]:
    merged: dict[str, list[float]] = {}
    for t in items:
        videos = generate(pipe, t, seeds, num_frames, steps, vsp, tar, interpolation)
        for key, values in scores(videos, t).items():
            merged.setdefault(key, []).extend(values)
    return {key: float(np.mean(values)) for key, values in merged.items()} | {"n": len(merged["success"])}


def row(label: str, m: dict[str, float]) -> str:
    return (f"| {label} | {m['n']:.0f} | {100 * m['success']:.0f}% | {m['flicker']:.4f} | {m['flips']:.2f} "
            f"| {m['change']:.3f} |")


HEADER = "| condition | videos | X→Y success | flicker ↓ | state flips ↓ | change ↑ |\n|---|---|---|---|---|---|"


def save_gif(pipe: VSTARPipeline, path: Path, steps: int) -> None:
    """Prompt-only vs VSP+TAR side by side, upscaled 4x, for the README."""
    from vstar.io import write_video

    t = Transition(Scene("circle", "red", "large", "black", "center"), Scene("square", "blue", "large", "black",
                                                                             "center"))
    a = generate(pipe, t, [0], 16, steps, vsp=False, tar=None)[0]
    b = generate(pipe, t, [0], 16, steps, vsp=True, tar="64D1")[0]
    write_video(np.concatenate([a, np.ones_like(a[:, :, :2]), b], axis=2), path, fps=4, overwrite=True, upscale=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--long-prompts", type=int, default=6)
    parser.add_argument("--long-seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--gif", type=Path, default=None, help="also write a side-by-side GIF here")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    pipe = VSTARPipeline.from_pretrained("toy-shapes", device="cpu")
    seeds, long_seeds = list(range(args.seeds)), list(range(args.long_seeds))
    items, long_items = transitions(args.prompts), transitions(args.long_prompts, seed=1)

    print(f"## Transition faithfulness, 16 frames ({args.steps} DDIM steps)\n\n{HEADER}")
    for label, vsp, tar, mode in (("prompt only", False, None, "linear"), ("VSP", True, None, "linear"),
                                  ("VSP + TAR 64D1", True, "64D1", "linear"),
                                  ("VSP (step interpolation) + TAR 64D1", True, "64D1", "step")):
        print(row(label, run_condition(pipe, items, seeds, 16, args.steps, vsp, tar, mode)), flush=True)

    for frames in (48, 64):
        print(f"\n## Long videos, {frames} frames, VSP\n\n{HEADER}")
        for label, tar in (("TAR off", None), ("TAR 64D1_32D8", "64D1_32D8")):
            print(row(label, run_condition(pipe, long_items, long_seeds, frames, args.steps, True, tar)), flush=True)

    print(f"\n## Sigma sweep, 48 frames, VSP, TAR at level 0\n\n{HEADER}")
    for sigma in (None, 8.0, 4.0, 2.0, 1.0, 0.5):
        tar = None if sigma is None else TARConfig(sigmas={0: sigma})
        label = "TAR off" if sigma is None else f"sigma {sigma:g}"
        print(row(label, run_condition(pipe, long_items, long_seeds, 48, args.steps, True, tar)), flush=True)

    if args.gif is not None:
        save_gif(pipe, args.gif, args.steps)
        print(f"\nwrote {args.gif}")


if __name__ == "__main__":
    main()
