"""The paper's temporal attention questions (figures 4, 5 and 9) answered on the embedded toy model.

    python benchmarks/toy_analysis.py [--videos 6] [--frames 16,48] [--out docs/analysis]

The toy domain's "real videos" are vstar's procedural clips (:func:`vstar.toy.scenes.sample_clip`: one shape
moving and growing gradually, as in training v2); generated videos use their captions as prompts. Every
number comes from :mod:`vstar.analysis`, one row per condition, mean over ``--videos`` scenes (each its own
seed):

- Figure 4: band score (expected frame distance ``sum_j A[i,j] |i-j|``; 0 = identity, (F^2-1)/(3F) =
  uniform) and diagonal mass per level, real clips (noised to t = 400, one denoiser call) vs generated
  (maps averaged over the steps, prompt branch), TAR off and on, at each frame count.
- TAR's sigma at level "64" (1, 2, 4, 8; all steps of the preset's 14/25): band scores and the videos'
  flicker, optical-flow magnitude and mean change from the first frame.
- Figure 5: identity or uniform attention at one level at a time (TAR off) -> the same video measures.
- Figure 9: a procedural clip's SSIM similarity as dA at level "64" (a still clip: all ones, which is the
  same as TAR off since it shifts each row's logits by a constant; a fast one: a band) vs the Gaussian band.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from measure import machine, setup

from vstar import TARConfig, VSTARPipeline
from vstar.analysis import band_score, change_from_first, diagonal_mass, flicker, flow_magnitude
from vstar.analysis.plots import attention_figure, save_figure
from vstar.analysis.real_video import record_video_attention
from vstar.analysis.reference import TARReference
from vstar.analysis.similarity import similarity_matrix
from vstar.tar import level_name
from vstar.toy.scenes import Motion, Scene, caption, render_clip, sample_clip

Clip = tuple[Scene, Motion, np.ndarray]


def clips(count: int, num_frames: int, seed: int = 0) -> list[Clip]:
    """``count`` moving procedural clips ``(F, 32, 32, 3)`` with their scene and motion (never still)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < count:
        scene, motion, omit = sample_clip(rng, num_frames)
        if motion.dx or motion.dy or motion.grow:
            out.append((scene, motion, render_clip(scene, num_frames, motion=motion)))
    return out


def prompt_of(scene: Scene) -> str:
    return caption(scene, omit=("position",))


def level_scores(by_level: dict[int, torch.Tensor]) -> dict[str, float]:
    scores = {}
    for level, attention in sorted(by_level.items()):
        scores[f"band {level_name(level)}"] = float(band_score(attention))
        scores[f"diag {level_name(level)}"] = float(diagonal_mass(attention))
    return scores


def video_scores(frames: np.ndarray) -> dict[str, float]:
    return {"flicker": flicker(frames), "flow px/frame": flow_magnitude(frames),
            "change": float(change_from_first(frames)[1:].mean())}


def mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def real_condition(pipe: VSTARPipeline, items: Sequence[Clip]) -> tuple[dict[str, float], dict[int, torch.Tensor]]:
    rows, first = [], None
    for i, (scene, _, frames) in enumerate(items):
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
        by_level = record_video_attention(pipe.backbone, video, prompt_of(scene), seed=i).by_level()
        first = first or by_level
        rows.append(level_scores(by_level) | video_scores(frames))
    return mean_rows(rows), first


def generated_condition(pipe: VSTARPipeline, items: Sequence[Clip], num_frames: int,
                        **settings: Any) -> tuple[dict[str, float], dict[int, torch.Tensor]]:
    rows, first = [], None
    for i, (scene, _, _) in enumerate(items):
        out = pipe(prompt_of(scene), num_frames=num_frames, progress=False, record_attention=True,
                   generator=torch.Generator().manual_seed(i), **settings)
        by_level = out.attention.by_level()
        first = first or by_level
        rows.append(level_scores(by_level) | video_scores(out.frames[0]))
    return mean_rows(rows), first


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    keys = list(next(iter(rows.values())))
    lines = [f"\n### {title}\n", "| condition | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def timed(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    print(f"  {label}: {time.perf_counter() - start:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=6, help="scenes (each its own seed) per condition")
    parser.add_argument("--frames", default="16,48", help="frame counts for figure 4")
    parser.add_argument("--out", type=Path, help="folder for results.json and the attention figure")
    args = parser.parse_args()
    setup(1)
    print(f"toy-shapes, {args.videos} videos per condition; {machine()}")
    pipe = VSTARPipeline.from_pretrained("toy-shapes", device="cpu")
    results: dict[str, dict[str, dict[str, float]]] = {}
    figure_maps: dict[str, dict[int, torch.Tensor]] = {}

    for num_frames in [int(f) for f in args.frames.split(",")]:
        items = clips(args.videos, num_frames)
        preset = "64D1" if num_frames <= 32 else "64D1_32D8"
        rows = {}
        rows["real clips"], real_maps = timed("real", real_condition, pipe, items)
        rows["generated, TAR off"], off_maps = timed("off", generated_condition, pipe, items, num_frames, tar=None)
        rows[f"generated, TAR {preset}"], on_maps = timed(
            preset, generated_condition, pipe, items, num_frames, tar=preset)
        results[f"figure 4, {num_frames} frames"] = rows
        if not figure_maps:
            figure_maps = {"real clip": real_maps, "generated, TAR off": off_maps, f"TAR {preset}": on_maps}

    items = clips(args.videos, 16)
    rows = {"TAR off": results["figure 4, 16 frames"]["generated, TAR off"]}
    for sigma in (1, 2, 4, 8):
        rows[f"TAR 64D{sigma}"], _ = timed(
            f"sigma {sigma}", generated_condition, pipe, items, 16, tar=TARConfig.parse(f"64D{sigma}"))
    results["TAR sigma at level 64, 16 frames"] = rows

    rows = {"TAR off": results["figure 4, 16 frames"]["generated, TAR off"]}
    for mode in ("identity", "uniform"):
        for resolution in ("64", "32", "16", "init"):
            rows[f"{mode} at {resolution}"], _ = timed(
                f"{mode}:{resolution}", generated_condition, pipe, items, 16, tar=None,
                replace_attention=f"{mode}:{resolution}")
    results["figure 5: replaced attention, 16 frames"] = rows

    rows = {"Gaussian band 64D1": results["TAR sigma at level 64, 16 frames"]["TAR 64D1"]}
    scene = dataclasses.replace(items[0][0], motion="still")
    still = render_clip(scene, 16)  # all-ones dA: a constant shift of each row's logits, so TAR off exactly
    fast = render_clip(scene, 16, motion=Motion(dx=1.5, center=(0.5, 0.5)))
    for name, reference in (("still clip's SSIM as dA", still), ("fast clip's SSIM as dA", fast)):
        ref = TARReference.from_matrix(similarity_matrix(reference, "ssim").tolist(), name, "ssim")
        rows[name], _ = timed(name, generated_condition, pipe, items, 16, tar="64D1", tar_reference=ref)
    results["figure 9: a clip's similarity as dA, 16 frames"] = rows

    for title, rows in results.items():
        print(table(title, rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "toy_analysis.json").write_text(json.dumps(results, indent=1))
        figure = attention_figure(figure_maps, "toy-shapes: temporal attention per level")
        save_figure(figure, args.out / "toy_attention.png", overwrite=True)
        print(f"wrote {args.out / 'toy_analysis.json'} and {args.out / 'toy_attention.png'}")


if __name__ == "__main__":
    main()
