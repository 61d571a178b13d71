"""Frame quality of the toy model, old (shipped) weights vs new ones, side by side in one run.

    python benchmarks/toy_quality.py [--new runs/toy_v2/export] [--old PATH] [--prompts 20] [--transitions 20]
        [--seeds 4] [--frames 16,48] [--unnamed-frames 16] [--steps 25] [--quick] [--workers 2]

Weight-free and in pixel space: every frame is scored by ``vstar.toy.classifier`` (hand-written rules).

- Single-state prompts ("a red circle on a black background"), every prompt x seed at each length:
  **clean** = share of frames showing one shape on a uniform background (fewer than 3% of the background
  pixels farther than 0.2 from the border colour, :func:`vstar.toy.classifier.is_clean`); **right** = share of
  the clean frames whose colour and shape are the prompt's; **clean+right** = share of all frames that are
  both; **flicker** = mean absolute difference of consecutive frames (pixels in [0, 1]); **background held**
  = share of videos whose frames all show the same background colour (the palette colour nearest the
  frame's border), which the per-frame measures cannot see.
- Transitions ("a red circle on a black background turning into a blue square", colour and shape both
  change): **X→Y success** = at least half of the first 4 frames show X and at least half of the last 4 show
  Y (colour and shape), for the prompt alone on every frame and with VSP (the offline rules synopsis, default
  interpolation); clean share, flicker and background held of the VSP videos. At the ``--unnamed-frames``
  lengths the same transitions are measured again with no background in the prompt ("a red circle turning
  into a blue square"): the model picks one, and every frame should keep it.

All other settings are the pipeline's defaults for the toy model (25 DDIM steps, guidance 5, TAR 64D1) unless
``--tar none``. ``--quick`` (3 prompts, 3 transitions, 1 seed) is a smoke test, not a measurement.
``--workers 2`` measures the two models in two processes of one thread each (about twice as fast on two
cores as one process of two threads; the numbers are the same, the sampling is seeded).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vstar import VSTARPipeline
from vstar.synopsis import make_synopsis
from vstar.toy.classifier import FrameState, classify_clip, is_clean, matches, shows
from vstar.toy.model import WEIGHTS_DIR, load_toy
from vstar.toy.scenes import BACKGROUNDS, COLORS, SHAPES, Scene

EDGE = 4  # frames at each end that must show the start / end state


def _scene(shape: str, color: str, background: str) -> Scene:
    return Scene(shape, color, "large", background, "center")


def _prompt(s: Scene) -> str:
    return f"a {s.color} {s.shape} on a {s.background} background"


@dataclass(frozen=True)
class Transition:
    start: Scene
    end: Scene
    named_background: bool = True  # False: the prompt leaves the background to the model

    @property
    def prompt(self) -> str:
        start = _prompt(self.start) if self.named_background else f"a {self.start.color} {self.start.shape}"
        return f"{start} turning into a {self.end.color} {self.end.shape}"


def single_scenes(count: int, seed: int = 0) -> list[Scene]:
    """``count`` distinct colour x shape x background scenes in a seeded order."""
    combos = list(itertools.product(SHAPES, COLORS, BACKGROUNDS))
    order = np.random.default_rng(seed).permutation(len(combos))[:count]
    return [_scene(*combos[i]) for i in order]


def transitions(count: int, seed: int = 0, named_background: bool = True) -> list[Transition]:
    """``count`` distinct transitions that change both colour and shape, in a seeded order."""
    rng = np.random.default_rng(seed)
    pairs = [(c1, s1, c2, s2) for c1, c2 in itertools.permutations(COLORS, 2)
             for s1, s2 in itertools.permutations(SHAPES, 2)]
    out = []
    for i in rng.permutation(len(pairs))[:count]:
        c1, s1, c2, s2 = pairs[i]
        bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
        out.append(Transition(_scene(s1, c1, bg), _scene(s2, c2, bg), named_background))
    return out


Generate = Callable[..., np.ndarray]


def generator_for(pipe: VSTARPipeline, steps: int, tar: str | None) -> Generate:
    """``generate(prompt, synopsis, seeds, num_frames) -> (len(seeds), F, H, W, 3)`` frames in [0, 1]."""
    extra = {} if tar == "default" else {"tar": None if tar == "none" else tar}

    def generate(prompt: str, synopsis: Sequence[str] | None, seeds: Sequence[int], num_frames: int) -> np.ndarray:
        out = pipe(prompt, synopsis, num_frames=num_frames, num_inference_steps=steps, progress=False,
                   num_videos=len(seeds), generator=[torch.Generator().manual_seed(s) for s in seeds], **extra)
        return np.asarray(out.frames, dtype=np.float32)

    return generate


def flicker(video: np.ndarray) -> float:
    return float(np.abs(np.diff(video, axis=0)).mean()) if len(video) > 1 else 0.0


def holds_background(states: Sequence[FrameState]) -> bool:
    """Whether every frame shows the same background colour (the palette colour nearest its border)."""
    return len({s.background for s in states}) == 1


def single_state(generate: Generate, scenes: Sequence[Scene], seeds: Sequence[int], frames: int) -> dict[str, float]:
    clean, right, flick, held = [], [], [], []
    for scene in scenes:
        for video in generate(_prompt(scene), None, seeds, frames):
            flick.append(flicker(video))
            states = classify_clip(video)
            held.append(holds_background(states))
            for frame, state in zip(video, states, strict=True):
                ok = is_clean(frame)
                clean.append(ok)
                right.append(ok and matches(state, scene))
    n_clean = sum(clean)
    return {"videos": len(flick), "clean": float(np.mean(clean)),
            "right": sum(right) / n_clean if n_clean else 0.0, "clean+right": float(np.mean(right)),
            "flicker": float(np.mean(flick)), "background held": float(np.mean(held))}


def transition_scores(generate: Generate, items: Sequence[Transition], seeds: Sequence[int],
                      frames: int) -> dict[str, float]:
    plain, vsp, clean, flick, held = [], [], [], [], []
    for t in items:
        synopsis = make_synopsis(t.prompt, backend="rules", cache=False).states
        for videos, success in ((generate(t.prompt, None, seeds, frames), plain),
                                (generate(t.prompt, synopsis, seeds, frames), vsp)):
            for video in videos:
                success.append(shows(video[:EDGE], t.start) and shows(video[-EDGE:], t.end))
                if success is vsp:
                    clean.extend(is_clean(frame) for frame in video)
                    flick.append(flicker(video))
                    held.append(holds_background(classify_clip(video)))
    return {"videos": len(vsp), "X→Y prompt only": float(np.mean(plain)), "X→Y VSP": float(np.mean(vsp)),
            "clean (VSP)": float(np.mean(clean)), "flicker (VSP)": float(np.mean(flick)),
            "background held (VSP)": float(np.mean(held))}


def measure(pipe: VSTARPipeline, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    generate = generator_for(pipe, args.steps, args.tar)
    seeds = list(range(args.seeds))
    results: dict[str, dict[str, float]] = {}
    for frames in args.frames:
        started = time.monotonic()
        results[f"single state, {frames} frames"] = single_state(
            generate, single_scenes(args.prompts), seeds, frames)
        results[f"transitions, {frames} frames"] = transition_scores(
            generate, transitions(args.transitions), seeds, frames)
        if frames in args.unnamed_frames:
            results[f"transitions, no background named, {frames} frames"] = transition_scores(
                generate, transitions(args.transitions, named_background=False), seeds, frames)
        print(f"  {frames} frames: {time.monotonic() - started:.0f} s", flush=True)
    return results


def measure_weights(weights: Path, args: argparse.Namespace, threads: int | None = None) -> dict[str, dict[str, float]]:
    """:func:`measure` on the toy model with ``weights``, on ``threads`` threads (default: torch's)."""
    torch.set_flush_denormal(True)
    if threads is not None:
        torch.set_num_threads(threads)
    print(f"measuring {weights}", flush=True)
    return measure(VSTARPipeline(load_toy(weights=weights)), args)


def table(columns: dict[str, dict[str, dict[str, float]]]) -> str:
    names = list(columns)
    lines = [f"| measure | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    first = columns[names[0]]
    for group, values in first.items():
        for key in values:
            cells = []
            for name in names:
                v = columns[name][group][key]
                cells.append(f"{v:.0f}" if key == "videos" else f"{v:.4f}" if "flicker" in key else f"{100 * v:.1f}%")
            lines.append(f"| {group}: {key} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, default=WEIGHTS_DIR, help="weights folder (default: shipped)")
    parser.add_argument("--new", type=Path, default=None, help="weights folder of the new model")
    parser.add_argument("--prompts", type=int, default=20, help="single-state prompts")
    parser.add_argument("--transitions", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--frames", type=lambda s: [int(f) for f in s.split(",")], default=[16, 48])
    parser.add_argument("--unnamed-frames", type=lambda s: [int(f) for f in s.split(",") if f], default=[16],
                        help="lengths at which transitions are also measured with no background in the prompt")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--tar", default="default", help="'default' (the pipeline's), 'none', or a preset")
    parser.add_argument("--quick", action="store_true", help="3 prompts, 3 transitions, 1 seed: a smoke test")
    parser.add_argument("--workers", type=int, default=1, help="models measured at once, one thread each")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.transitions, args.seeds = 3, 3, 1
    started = time.monotonic()
    models = {"old": args.old} | ({"new": args.new} if args.new is not None else {})
    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = {name: pool.submit(measure_weights, weights, args, 1) for name, weights in models.items()}
            results = {name: future.result() for name, future in futures.items()}
    else:
        results = {name: measure_weights(weights, args) for name, weights in models.items()}
    columns = {f"{name} ({models[name]})": result for name, result in results.items()}
    print(f"\n## Toy frame quality ({args.prompts} prompts, {args.transitions} transitions, {args.seeds} seeds, "
          f"{args.steps} DDIM steps, TAR {args.tar})\n\n{table(columns)}")
    print(f"\n({(time.monotonic() - started) / 60:.1f} minutes)")


if __name__ == "__main__":
    main()
