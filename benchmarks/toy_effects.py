"""Measured effects of VSP and TAR on the embedded toy model (trained on one-state clips), in one run.

    python benchmarks/toy_effects.py [--prompts 20] [--seeds 4] [--long-prompts 8] [--steps 25] [--gif docs/toy.gif]

Every frame is scored by the pixel-space classifier of ``vstar.toy.classifier`` (no learned weights).

- Transition faithfulness (16 frames): share of "X turning into Y" videos whose first 4 frames show X and
  last 4 frames show Y (colour and shape), and share whose last 4 frames show Y at all, for the prompt alone
  on every frame, VSP, and VSP + TAR.
- Long videos (48 and 64 frames, trained on 8-16), VSP with TAR off / on (64D1_32D8): transition success,
  flicker (mean absolute change between consecutive frames, lower is more coherent), state flips (classified
  colour/shape changes between consecutive frames), and change (mean absolute difference between the
  first and last 4 frames).
- A sigma sweep of TAR at level 0 on 48 frames with the same measures (its "TAR off" row is the one above),
  and a sweep of TAR's strength (the multiplier of ``max(S) * dA``) at sigma 1.
- The toy's temporal attention at levels 0-1 while sampling one 16-frame video: mean row maximum of the
  logits ``S``, and the weight each frame gives itself without and with TAR sigma 1.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vstar import VSTARPipeline
from vstar.synopsis import make_synopsis
from vstar.tar import TARConfig, TARProcessor, temporal_attention_layers
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
    result: dict[str, list[float]] = {"success": [], "ends": [], "flicker": [], "flips": [], "change": []}
    for video in videos:
        ends = shows(video[-EDGE:], t.end)
        result["success"].append(float(shows(video[:EDGE], t.start) and ends))
        result["ends"].append(float(ends))
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


class AttentionProbe:
    """Wraps a temporal attention processor and records, per call, the logits' mean row maximum and the
    own-frame attention weight without and with TAR sigma 1 (row max), then runs the wrapped processor."""

    def __init__(self, processor: object) -> None:
        self.processor, self.tar = processor, TARProcessor(sigma=1.0)
        self.records: list[tuple[float, float, float]] = []

    def __call__(self, attn, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))[:, None]  # (batch*h*w*heads, 1, F, d)
        key = attn.head_to_batch_dim(attn.to_k(hidden_states))[:, None]
        scores = (query @ key.transpose(-1, -2)) * attn.scale
        own = torch.eye(scores.shape[-1], dtype=torch.bool)
        plain = scores.softmax(-1)[..., own].mean().item()
        regularized = self.tar.regularized_attention(query, key, attn.scale)[..., own].mean().item()
        self.records.append((scores.amax(-1).mean().item(), plain, regularized))
        return self.processor(attn, hidden_states, *args, **kwargs)


def attention_table(pipe: VSTARPipeline, steps: int) -> str:
    """Per temporal attention layer at levels 0-1: logit row maximum and own-frame weight without / with TAR."""
    layers = [layer for layer in temporal_attention_layers(pipe.backbone.unet) if layer.level in (0, 1)]
    probes = {layer.name: AttentionProbe(layer.module.processor) for layer in layers}
    for layer in layers:
        layer.module.set_processor(probes[layer.name])
    try:
        generate(pipe, transitions(1)[0], [0], 16, steps, vsp=True, tar=None)
    finally:
        for layer in layers:
            layer.module.set_processor(probes[layer.name].processor)
    lines = ["| layer | row max of S | own-frame weight | with TAR sigma 1 |", "|---|---|---|---|"]
    for name, probe in probes.items():
        peak, plain, regularized = np.mean(probe.records, axis=0)
        lines.append(f"| {name.replace('.transformer_blocks.0.', ' ')} | {peak:.2f} | {plain:.3f} | {regularized:.3f} |")
    return "\n".join(lines) + f"\n\n(uniform attention over 16 frames gives every frame {1 / 16:.4f})"


def row(label: str, m: dict[str, float]) -> str:
    return (f"| {label} | {m['n']:.0f} | {100 * m['success']:.0f}% | {100 * m['ends']:.0f}% | {m['flicker']:.4f} "
            f"| {m['flips']:.2f} | {m['change']:.3f} |")


HEADER = ("| condition | videos | X→Y success | ends as Y | flicker ↓ | state flips ↓ | change ↑ |\n"
          "|---|---|---|---|---|---|---|")


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
    parser.add_argument("--long-prompts", type=int, default=8)
    parser.add_argument("--long-seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--gif", type=Path, default=None, help="also write a side-by-side GIF here")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    started = time.monotonic()
    pipe = VSTARPipeline.from_pretrained("toy-shapes", device="cpu")
    seeds, long_seeds = list(range(args.seeds)), list(range(args.long_seeds))
    items, long_items = transitions(args.prompts), transitions(args.long_prompts, seed=1)

    print(f"## Transition faithfulness, 16 frames ({args.steps} DDIM steps)\n\n{HEADER}")
    for label, vsp, tar, mode in (("prompt only", False, None, "linear"), ("VSP", True, None, "linear"),
                                  ("VSP + TAR 64D1", True, "64D1", "linear"),
                                  ("VSP (step interpolation) + TAR 64D1", True, "64D1", "step")):
        print(row(label, run_condition(pipe, items, seeds, 16, args.steps, vsp, tar, mode)), flush=True)

    long_off: dict[str, float] = {}
    for frames in (48, 64):
        print(f"\n## Long videos, {frames} frames, VSP\n\n{HEADER}")
        for label, tar in (("TAR off", None), ("TAR 64D1_32D8", "64D1_32D8")):
            measured = run_condition(pipe, long_items, long_seeds, frames, args.steps, True, tar)
            long_off = measured if (frames, tar) == (48, None) else long_off
            print(row(label, measured), flush=True)

    print(f"\n## Sigma sweep, 48 frames, VSP, TAR at level 0\n\n{HEADER}\n{row('TAR off', long_off)}")
    for sigma in (8.0, 4.0, 2.0, 1.0, 0.5):
        tar = TARConfig(sigmas={0: sigma})
        print(row(f"sigma {sigma:g}", run_condition(pipe, long_items, long_seeds, 48, args.steps, True, tar)),
              flush=True)

    print(f"\n## Strength sweep, 48 frames, VSP, TAR sigma 1 at level 0\n\n{HEADER}\n{row('TAR off', long_off)}")
    for strength in (4.0, 16.0):
        tar = TARConfig(sigmas={0: 1.0}, strength=strength)
        print(row(f"strength {strength:g}", run_condition(pipe, long_items, long_seeds, 48, args.steps, True, tar)),
              flush=True)

    print(f"\n## Temporal attention of the toy model, levels 0-1, one 16-frame video\n\n{attention_table(pipe, args.steps)}")

    if args.gif is not None:
        save_gif(pipe, args.gif, args.steps)
        print(f"\nwrote {args.gif}")
    print(f"\n({(time.monotonic() - started) / 60:.1f} minutes)")


if __name__ == "__main__":
    main()
