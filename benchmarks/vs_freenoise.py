"""One VSTAR pass against diffusers' FreeNoise windows: time and peak memory of one denoiser forward.

    python benchmarks/vs_freenoise.py [--frames 64] [--rounds 5] [--threads 1] [--device cpu]

Both use the same components: the tiny random AnimateDiff of vstar's registry (an SD-style UNet with
motion modules), its frame position table lengthened to cover ``--frames`` (the positions are sinusoidal,
so no weight changes). Settings: one pass over all frames with TAR off and with TAR 64D1, and FreeNoise
(``AnimateDiffPipeline.enable_free_noise(context_length=16, context_stride=4)``: every motion module attends
within windows of 16 frames, one every 4 frames, and blends them). One forward is a CFG batch of 2 at
64x64 px, timestep 500; interleaved rounds after a warm-up, medians; peak memory as in ``tar_overhead.py``.
"""

from __future__ import annotations

import argparse
import copy

import torch
from diffusers import AnimateDiffPipeline, MotionAdapter
from measure import MiB, interleaved_medians, machine, peak_bytes, setup
from torch import nn

from vstar import TARState, apply_tar
from vstar.backbones.animatediff import motion_unet, tiny_animatediff_parts


def long_motion_unet(parts: dict, frames: int) -> tuple[nn.Module, MotionAdapter]:
    """The tiny AnimateDiff UNet with a frame position table of at least ``frames`` entries."""
    short = parts["motion_adapter"]
    adapter = MotionAdapter.from_config(short.config, motion_max_seq_length=max(frames, 32))
    missing, unexpected = adapter.load_state_dict(
        {k: v for k, v in short.state_dict().items() if not k.endswith(".pe")}, strict=False)
    assert not unexpected and all(k.endswith(".pe") for k in missing), (missing, unexpected)
    return motion_unet(parts["unet"], adapter).eval(), adapter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    parts = tiny_animatediff_parts()
    unet, adapter = long_motion_unet(parts, args.frames)
    windows = AnimateDiffPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                                  unet=copy.deepcopy(unet), motion_adapter=adapter, scheduler=parts["scheduler"])
    windows.enable_free_noise(context_length=16, context_stride=4)
    unet, free_noise = unet.to(args.device), windows.unet.to(args.device).eval()
    state = apply_tar(unet, "64D1", TARState(active=False))

    torch.manual_seed(0)
    latents = torch.randn(2, 4, args.frames, 8, 8, device=args.device)
    # UNetMotionModel takes one text embedding per frame, (B*F, S, D)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, device=args.device).repeat_interleave(args.frames, 0)

    def forward(model: nn.Module) -> torch.Tensor:
        return model(latents, 500, encoder_hidden_states=context).sample

    def tar(active: bool) -> None:
        state.active = active

    runs = {"one pass": lambda: forward(unet), "one pass, TAR 64D1": lambda: forward(unet),
            "FreeNoise 16/4": lambda: forward(free_noise)}
    prepare = {"one pass": lambda: tar(False), "one pass, TAR 64D1": lambda: tar(True),
               "FreeNoise 16/4": lambda: tar(False)}
    with torch.no_grad():
        times = interleaved_medians(runs, args.rounds, warmup=1, device=args.device, prepare=prepare)
        peaks = {}
        for name, run in runs.items():
            prepare[name]()
            peaks[name] = peak_bytes(run, args.device)
    print(machine())
    print(f"tiny AnimateDiff, {args.frames} frames of 64x64 px, CFG batch of 2, median of {args.rounds} "
          f"interleaved rounds after a warm-up")
    print(f"{'setting':>20} {'s/forward':>10} {'x FreeNoise':>12} {'peak MiB':>10} {'x FreeNoise':>12}")
    base = "FreeNoise 16/4"
    for name in runs:
        print(f"{name:>20} {times[name]:>10.4f} {times[name] / times[base]:>12.3f} {peaks[name] / MiB:>10.1f} "
              f"{peaks[name] / peaks[base]:>12.3f}")


if __name__ == "__main__":
    main()
