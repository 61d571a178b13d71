"""What TAR and the frame-level edits cost on a video transformer (Wan): one spatio-temporal self-attention
layer, one tiny-wan denoiser forward, and a whole generation.

    python benchmarks/frame_tar_overhead.py [--frames 21 41] [--tokens-per-frame 64] [--heads 4] [--head-dim 32]
                                            [--rounds 5] [--threads 1] [--csv FILE]
    python benchmarks/frame_tar_overhead.py --device cuda --full --dtype bfloat16 --frames 21 41 --rounds 3

1. **Layer.** One self-attention over ``N = F x P`` frame-major tokens (``F`` latent frames of ``P`` tokens,
   ``q, k, v`` ``(2, N, H, d)`` random: a CFG batch of 2) as Wan's blocks run it: *stock* is plain SDPA (what
   Wan's ``attn1`` calls through diffusers' native backend), *TAR augment* and *TAR blocks* are
   ``tar_attention(method="augment" | "blocks")`` (sigma 2 latent frames, strength 1: the band of
   ``b0-1D2``), *TAR bias only* is their common first pass (``tar_bias``: the row maxima ``m_i``, one key
   frame at a time, and the ``(B, N, H, F)`` bias), *record* is ``frame_attention_map`` (the output and the
   ``F x F`` frame map of plain attention, what ``vstar analyze`` runs), *identity* / *uniform* are
   ``replaced_attention``. ``x stock`` is the median of each round's ratio to stock; peak is the allocator's
   peak during the call above what it held before (the inputs are not counted), ``x stock`` its ratio.
   ``--full``: Wan 2.1's self-attention at 480x832 (12 heads of 128, 1560 tokens per latent frame; a GPU's
   work).
2. **Forward.** ``tiny-wan`` (random weights, 64x64): ``backbone.model_output(latents, 500, context)`` on
   latents ``(2, 16, F, 8, 8)`` and one text per latent frame in CFG order, TAR off against ``b0-1D2`` (both
   blocks), ``b0D2`` (one block) and ``b0-1D2`` installed but inactive (the stock code: its ratio shows the
   host's noise), interleaved. *paired x off* measures TAR's own cost as ``tar_overhead.py`` does: every
   active TAR layer also runs the stock processor on the same input, back to back, and ``1 + (TAR - stock
   seconds) / the forward time of TAR off``. tiny-wan's forward is mostly its per-frame text path (512 text
   tokens against 16 video tokens per latent frame), and TAR's augmentation widens its heads of 12 channels
   to ``12 + F`` (rounded up to 8); neither holds at full size (heads of 128, self-attention over ``1560 F``
   tokens most of a block), so its ratios do not predict a full-size model's forward: weigh the layer ratios
   by the share of a forward spent in the self-attention of TAR's blocks.
3. **Generation.** TAR runs only in the first ``step_fraction`` (0.56) of the denoising steps and the later
   steps run the stock code, so a generation's denoising time is ``1 + 0.56 (forward ratio - 1)`` of TAR
   off (text encoding and decoding not counted, which only lowers it).

Times are CPU seconds of this process on the CPU, synchronised wall seconds on CUDA; median of ``--rounds``
interleaved rounds after a warm-up round, the order rotated each round (see ``measure.py``). Every table is
printed, and written to ``--csv``, as soon as it is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F_nn
from measure import (
    MiB,
    add_run_options,
    interleaved_times,
    machine,
    median_ratio,
    peak_bytes,
    setup,
    write_csv,
)
from tar_overhead import PairedClock, paired_seconds

from vstar import TARState, apply_tar, remove_tar
from vstar.backbones import load_backbone
from vstar.conditioning import cfg_context
from vstar.frame_attention import frame_attention_map, replaced_attention, tar_attention, tar_bias
from vstar.tar import TARConfig, regularization_matrix

SIGMA, STRENGTH = 2.0, 1.0  # the band of b0-1D2
STEP_FRACTION = TARConfig().step_fraction  # 0.56: TAR acts on the first 14 of 25 steps
FULL = {"tokens_per_frame": 1560, "heads": 12, "head_dim": 128}  # Wan 2.1 at 480x832: 30 x 52 tokens a frame
PRESETS = ["b0-1D2", "b0D2"]
NAN = float("nan")


def layer_variants(frames: int, tokens_per_frame: int, heads: int, head_dim: int, device: str,
                   dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    """One call of each attention variant on the same random ``(2, N, H, d)`` inputs (made once)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, frames * tokens_per_frame, heads, head_dim, device=device, dtype=dtype).unbind(0)
    band = regularization_matrix(frames, SIGMA, device=device, dtype=torch.float32)

    def stock() -> torch.Tensor:  # (B, N, H, d) through SDPA, as diffusers' native backend calls it
        out = F_nn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)

    return {
        "stock": stock,
        "TAR augment": lambda: tar_attention(q, k, v, frames, band, STRENGTH, method="augment"),
        "TAR blocks": lambda: tar_attention(q, k, v, frames, band, STRENGTH, method="blocks"),
        "TAR bias only": lambda: tar_bias(q, k, frames, band, STRENGTH)(0, q.shape[1]),
        "record": lambda: frame_attention_map(q, k, v, frames),
        "identity": lambda: replaced_attention(q, k, v, frames, "identity"),
        "uniform": lambda: replaced_attention(q, k, v, frames, "uniform"),
    }


def row(part: str, subject: str, frames: int, variant: str, seconds: float, time_ratio: float, peak: float,
        memory_ratio: float, paired: float = NAN, generation: float = NAN) -> dict:
    return {"part": part, "subject": subject, "frames": frames, "variant": variant, "seconds": seconds,
            "time_ratio": time_ratio, "peak_mib": peak / MiB, "memory_ratio": memory_ratio,
            "paired_time_ratio": paired, "generation_ratio": generation}


def measure_layers(args: argparse.Namespace, dtype: torch.dtype, rows: list[dict],
                   save: Callable[[], object]) -> None:
    p, h, d = args.tokens_per_frame, args.heads, args.head_dim
    subject = f"layer {h}x{d}, {p} tokens/frame"
    print(f"\n1. one spatio-temporal self-attention layer: CFG batch 2, {h} heads of {d}, {p} tokens per latent "
          f"frame, {args.dtype}; TAR sigma {SIGMA:g} latent frames, strength {STRENGTH:g}\n"
          f"{'frames':>6} {'tokens':>7} {'variant':>12} {'s/call':>9} {'x stock':>8} {'peak MiB':>9} {'x stock':>8}")
    for frames in args.frames:
        calls = layer_variants(frames, p, h, d, args.device, dtype)
        with torch.no_grad():
            times = interleaved_times(calls, args.rounds, warmup=1, device=args.device)
            peaks = {name: peak_bytes(call, args.device) for name, call in calls.items()}
        for name in calls:
            rows.append(row("layer", subject, frames, name, statistics.median(times[name]),
                            median_ratio(times, name, "stock"), peaks[name], peaks[name] / peaks["stock"]))
            r = rows[-1]
            print(f"{frames:>6} {frames * p:>7} {name:>12} {r['seconds']:>9.4f} {r['time_ratio']:>8.3f} "
                  f"{r['peak_mib']:>9.2f} {r['memory_ratio']:>8.3f}", flush=True)
        del calls
        save()


def measure_forwards(args: argparse.Namespace, dtype: torch.dtype, rows: list[dict],
                     save: Callable[[], object]) -> None:
    backbone = load_backbone("tiny-wan", device=args.device).to(dtype)
    d = backbone.defaults
    text = backbone.encode_text(["a red circle turning into a blue square", ""])
    installs = {"off": lambda: remove_tar(backbone)}
    installs.update({preset: lambda preset=preset: apply_tar(backbone, preset) for preset in PRESETS})
    installs[f"{PRESETS[0]} inactive"] = lambda: apply_tar(backbone, PRESETS[0], TARState(active=False))
    clock = PairedClock(backbone, args.device)
    subject = f"tiny-wan {d.height}x{d.width}"
    config = backbone.transformer.config
    head_dim, widths = config.attention_head_dim, " and ".join(str(augmented_width(backbone, f)) for f in args.frames)
    print(f"\n2. one denoiser forward: {subject}, CFG batch 2, timestep 500, {args.dtype}; {PRESETS[0]} = TAR on both "
          f"blocks, {PRESETS[1]} = block 0\n"
          "   NOTE tiny-wan's forward is mostly its per-frame text path (512 text tokens against "
          f"{(d.height // 16) * (d.width // 16)} video tokens\n"
          f"   per latent frame), and TAR's augmentation widens its {config.num_attention_heads} heads of {head_dim} "
          f"channels to {widths} (at {' and '.join(map(str, args.frames))} latent frames);\n"
          "   neither holds at full size (1560 tokens per latent frame, heads of 128), so these ratios do not predict\n"
          "   a full-size model's forward: weigh the layer ratios (--full, on a GPU) by the share of a forward spent\n"
          "   in the self-attention of TAR's blocks\n"
          f"{'frames':>6} {'latent':>6} {'TAR':>15} {'s/forward':>10} {'x off':>7} {'paired x off':>12} "
          f"{'peak MiB':>9} {'x off':>7}")
    for frames in args.frames:
        call = forward_call(backbone, text, frames, args.device, dtype)
        with torch.no_grad():
            times = interleaved_times(dict.fromkeys(installs, call), args.rounds, warmup=1, device=args.device,
                                      prepare=installs)
            peaks, paired = {}, {}
            for name, install in installs.items():
                install()
                peaks[name] = peak_bytes(call, args.device)
                paired[name] = paired_seconds(clock, call, args.rounds)
        remove_tar(backbone)
        off = statistics.median(times["off"])
        for name in installs:
            ratio = median_ratio(times, name, "off")
            tar, stock = paired[name]
            paired_ratio = 1 + (tar - stock) / off
            rows.append(row("forward", subject, frames, name, statistics.median(times[name]), ratio, peaks[name],
                            peaks[name] / peaks["off"], paired_ratio,
                            generation_ratio(ratio) if name in PRESETS else NAN))
            print(f"{output_frames(frames):>6} {frames:>6} {name:>15} {rows[-1]['seconds']:>10.4f} {ratio:>7.3f} "
                  f"{paired_ratio:>12.3f} {rows[-1]['peak_mib']:>9.2f} {rows[-1]['memory_ratio']:>7.3f}", flush=True)
        save()


def forward_call(backbone: Any, text: torch.Tensor, frames: int, device: str,
                 dtype: torch.dtype) -> Callable[[], object]:
    """One denoiser forward on ``frames`` latent frames: latents ``(2, 16, F, h, w)``, the prompt and the negative
    prompt on every latent frame in CFG order (inputs made once, outside the timing)."""
    d = backbone.defaults
    latents = torch.randn(2, 16, frames, d.height // 8, d.width // 8, device=device, dtype=dtype)
    context = cfg_context(text[:1].expand(frames, -1, -1), text[1:].expand(frames, -1, -1))
    t = torch.tensor(500, device=device)
    return lambda: backbone.model_output(latents, t, context)


def augmented_width(backbone: Any, frames: int) -> int:
    """The head width TAR's augmentation gives the backbone's self-attention (``augmented_attention``): ``d + F``
    in float32, ``d + 2F`` in 16-bit, rounded up to a multiple of 8."""
    width = backbone.transformer.config.attention_head_dim + frames * (1 if backbone.dtype.itemsize >= 4 else 2)
    return width + -width % 8


def output_frames(latent_frames: int) -> int:
    """Wan's output frames for ``latent_frames`` (4x temporal compression, the first frame alone)."""
    return 4 * (latent_frames - 1) + 1


def generation_ratio(forward_ratio: float) -> float:
    """A generation's denoising time with TAR over without: TAR runs in the first ``step_fraction`` of steps."""
    return 1 + STEP_FRACTION * (forward_ratio - 1)


def print_generation(rows: list[dict]) -> None:
    print(f"\n3. whole generation (denoising steps; tiny-wan): TAR acts in the first {STEP_FRACTION:g} of the steps, "
          f"the rest run the stock code: 1 + {STEP_FRACTION:g} x (forward ratio - 1)\n"
          f"{'frames':>6} {'latent':>6} {'TAR':>15} {'from x off':>10} {'from paired':>11}")
    for r in rows:
        if r["part"] == "forward" and r["variant"] in PRESETS:
            print(f"{output_frames(r['frames']):>6} {r['frames']:>6} {r['variant']:>15} "
                  f"{r['generation_ratio']:>10.3f} {generation_ratio(r['paired_time_ratio']):>11.3f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[21, 41],
                        help="latent frames (21 = 81 output frames, 41 = 161)")
    parser.add_argument("--tokens-per-frame", type=int, default=None,
                        help=f"layer: tokens per latent frame (default 64; {FULL['tokens_per_frame']} with --full)")
    parser.add_argument("--heads", type=int, default=None,
                        help=f"layer: heads (default 4; {FULL['heads']} with --full)")
    parser.add_argument("--head-dim", type=int, default=None,
                        help=f"layer: channels per head (default 32; {FULL['head_dim']} with --full)")
    parser.add_argument("--full", action="store_true",
                        help="the layer at Wan 2.1's full size, 480x832 (CUDA only)")
    add_run_options(parser, dtype=None, dtype_help="default float32, bfloat16 with --full")
    args = parser.parse_args(argv)
    if any(f < 1 for f in args.frames):
        parser.error(f"--frames: latent frames must be >= 1, got {args.frames}")
    small = {"tokens_per_frame": 64, "heads": 4, "head_dim": 32}
    for name, value in (FULL if args.full else small).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.full else "float32"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.full and torch.device(args.device).type != "cuda":
        sys.exit("frame_tar_overhead.py: --full runs Wan 2.1's self-attention at 480x832 (32760 tokens at 21 latent "
                 "frames: minutes per call on a CPU core); use --device cuda")
    setup(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine())
    print(f"{args.dtype} on {args.device}; median of {args.rounds} interleaved rounds after a warm-up, ratios the "
          "median of per-round ratios; peak = allocator memory above the inputs and weights")
    rows: list[dict] = []

    def save() -> None:  # after every table, so that a run stopped by a time limit keeps what it measured
        if args.csv:
            write_csv(rows, args.csv)

    measure_layers(args, dtype, rows, save)
    measure_forwards(args, dtype, rows, save)
    print_generation(rows)


if __name__ == "__main__":
    main()
