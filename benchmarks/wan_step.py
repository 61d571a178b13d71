"""What per-frame synopsis text costs on Wan: time and peak memory of one denoising step with VSP against a
plain prompt.

    python benchmarks/wan_step.py [--model tiny-wan] [--frames 17 41 81 161] [--rounds 5] [--threads 1]
    python benchmarks/wan_step.py --device cuda --full [--frames 81 161] [--rounds 5] [--dtype bfloat16]

One step is one transformer call on a CFG batch of 2 (the negative prompt, then the prompt) at the model's
default size, timestep 500. *VSP*: 3 synopsis states interpolated over the latent frames, the video tokens of
each latent frame attending to their own 512 text tokens (vstar's ``PerFrameCrossAttention``, the path every
vstar generation on Wan takes); *plain*: one prompt per video through Wan's stock cross-attention, as
diffusers' ``WanPipeline`` calls the transformer. ``x plain`` is VSP/plain, the cost of the per-frame text
path: the text embedder and every block's key and value projections run on ``L*512`` text tokens per video
(``L`` latent frames) instead of 512, and the cross-attention runs as ``2*L`` attentions of one frame each.
Both variants alternate, the order rotated every round, after a warm-up round; the table shows median
seconds and the median of each round's ratio. Peak memory is the most the allocator held during one call
above what it held before (the weights and the inputs, per-frame text included, are not counted; see
``measure.py``); on CUDA ``max GiB`` is ``torch.cuda.max_memory_allocated`` of that call, all included.

``--full`` builds the published Wan 2.1 T2V-1.3B transformer (30 blocks of width 1536, 12 heads of 128,
feed-forward 8960, UMT5 text width 4096) with random weights on the device, in bfloat16 by default (cast as
``from_pretrained`` loads it: RoPE, the time embedder, the norms' and modulation parameters stay float32), and
runs it at 480x832 on random text states: no text encoder, VAE or download. It needs a GPU (the weights are
5.7 GB in float32, and one call at 81 frames would take an hour or more on a CPU core).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import WanTransformer3DModel
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

from vstar.backbones import load_backbone
from vstar.backbones.registry import BACKBONES, get_spec
from vstar.backbones.wan import TEXT_LENGTH, PerFrameCrossAttention, cross_attentions
from vstar.conditioning import cfg_context, interpolate_embeddings

PROMPT = "a red circle turning into a blue square"
STATES = ("a red circle on the left", "a purple shape in the middle", "a blue square on the right")
TINY_WAN_MODELS = [name for name, spec in BACKBONES.items() if spec.family == "wan" and spec.tiny]
FULL_MODEL = "wan2.1-t2v-1.3b"
# The published transformer configs (transformer/config.json of the Wan-AI *-Diffusers repositories): heads of
# 128 channels, UMT5 text of width 4096, timestep features 256, patch (1, 2, 2). The A14B experts are 14B-shaped.
FULL_CONFIGS = {
    "wan2.1-t2v-1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30, "in_channels": 16},
    "wan2.1-t2v-14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40, "in_channels": 16},
    "wan2.2-ti2v-5b": {"num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48},
}
FULL_CONFIGS["wan2.2-t2v-a14b"] = FULL_CONFIGS["wan2.1-t2v-14b"]
FULL_TEXT_WIDTH = 4096


def full_transformer(name: str = FULL_MODEL, num_layers: int | None = None) -> WanTransformer3DModel:
    """A full-size Wan transformer with random weights (no download), built on the current default device;
    ``num_layers`` blocks instead of the published number if given (the peak of a no-grad call falls in one
    block, so fewer blocks change the weights, not the activations)."""
    config = dict(FULL_CONFIGS[name])
    channels = config.pop("in_channels")
    if num_layers is not None:
        config["num_layers"] = num_layers
    return WanTransformer3DModel(patch_size=(1, 2, 2), attention_head_dim=128, in_channels=channels,
                                 out_channels=channels, text_dim=FULL_TEXT_WIDTH, freq_dim=256, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, **config).eval()


def cast_as_loaded(model: WanTransformer3DModel, dtype: torch.dtype) -> WanTransformer3DModel:
    """Cast as ``from_pretrained(torch_dtype=dtype)`` loads Wan: its ``_keep_in_fp32_modules`` (RoPE, the time
    embedder, the modulation tables, the cross-attention norm) stay float32."""
    keep = model._keep_in_fp32_modules or []
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and not any(part in keep for part in name.split(".")):
            tensor.data = tensor.data.to(dtype)
    return model


@dataclass
class Subject:
    """A Wan transformer, its geometry, and the text states of the synopsis, the prompt and the negative prompt
    (``(K, 512, D)``, ``(1, 512, D)``, ``(1, 512, D)``)."""

    name: str
    transformer: WanTransformer3DModel
    height: int
    width: int
    vae_scale_factor: int
    ti2v: bool  # one timestep per video token (Wan 2.2 TI2V)
    states: torch.Tensor
    prompt: torch.Tensor
    negative: torch.Tensor

    def latent_frames(self, num_frames: int) -> int:
        return (num_frames - 1) // 4 + 1

    def inputs(self, num_frames: int) -> dict[str, torch.Tensor]:
        """What the pipeline holds during a step on ``num_frames`` output frames: the latents, the timesteps, the
        synopsis states interpolated over the latent frames (``cond``) and the CFG context made of them
        (negative branch first, frame fastest), and the stock context of one prompt per video."""
        model, frames = self.transformer, self.latent_frames(num_frames)
        param = model.patch_embedding.weight  # (the first parameters may be float32 ones, see cast_as_loaded)
        h, w = self.height // self.vae_scale_factor, self.width // self.vae_scale_factor
        latents = torch.randn(2, model.config.in_channels, frames, h, w, device=param.device, dtype=param.dtype)
        t = torch.full((2,), 500, device=param.device)
        if self.ti2v:
            _, patch_h, patch_w = model.config.patch_size
            t = t[:, None].expand(2, frames * (h // patch_h) * (w // patch_w))
        cond = interpolate_embeddings(self.states, frames)
        context = cfg_context(cond, self.negative.expand(frames, -1, -1))
        return {"latents": latents, "timestep": t, "cond": cond, "context": context,
                "stock": torch.cat([self.negative, self.prompt])}

    def forward(self, inputs: dict[str, torch.Tensor], per_frame: bool) -> object:
        """One transformer call: per-frame text frame-major along the text axis (``(2, L*512, D)``, as
        ``WanBackbone.model_output`` passes it), or one text per video."""
        text = inputs["context"].reshape(2, -1, inputs["context"].shape[-1]) if per_frame else inputs["stock"]
        return self.transformer(hidden_states=inputs["latents"], timestep=inputs["timestep"],
                                encoder_hidden_states=text, return_dict=False)

    def calls(self, num_frames: int) -> dict[str, Callable[[], object]]:
        """One step of each variant on ``num_frames`` output frames (inputs made once, outside the timing)."""
        inputs = self.inputs(num_frames)
        return {"VSP": lambda: self.forward(inputs, True), "plain": lambda: self.forward(inputs, False)}

    def installs(self) -> dict[str, Callable[[], object]]:
        """How to set each variant up: per-frame cross-attention around every ``attn2`` processor, or stock."""
        stock = {name: m.processor for name, m in cross_attentions(self.transformer).items()}

        def install(per_frame: bool) -> None:
            for name, m in cross_attentions(self.transformer).items():
                m.set_processor(PerFrameCrossAttention(stock[name]) if per_frame else stock[name])

        return {"VSP": lambda: install(True), "plain": lambda: install(False)}


def tiny_subject(name: str, device: str, dtype: torch.dtype) -> Subject:
    backbone = load_backbone(name, device=device).to(dtype)
    d = backbone.defaults
    states = backbone.encode_text(list(STATES))
    prompt, negative = backbone.encode_text([PROMPT, ""]).split(1)
    transformer = backbone.expert_for(torch.tensor(500))
    return Subject(f"{name} {d.height}x{d.width}", transformer, d.height, d.width, backbone.vae_scale_factor,
                   backbone.expand_timesteps, states, prompt, negative)


def full_subject(device: str, dtype: torch.dtype) -> Subject:
    torch.manual_seed(0)
    with torch.device(device):  # built where it runs
        transformer = cast_as_loaded(full_transformer(), dtype)
    d = get_spec(FULL_MODEL).defaults
    text = torch.randn(len(STATES) + 2, TEXT_LENGTH, FULL_TEXT_WIDTH, device=device, dtype=dtype)
    return Subject(f"{FULL_MODEL} transformer (full size, random weights) {d.height}x{d.width}", transformer,
                   d.height, d.width, d.vae_scale_factor, False, text[:len(STATES)], text[-2:-1], text[-1:])


def measure(subject: Subject, frames: list[int], rounds: int, device: str) -> list[dict]:
    rows = []
    installs = subject.installs()
    cuda = torch.device(device).type == "cuda"
    for num_frames in frames:
        calls = subject.calls(num_frames)
        with torch.no_grad():
            times = interleaved_times(calls, rounds, warmup=1, device=device, prepare=installs)
            peaks, max_alloc = {}, {}
            for name, call in calls.items():
                installs[name]()
                peaks[name] = peak_bytes(call, device)
                max_alloc[name] = torch.cuda.max_memory_allocated() if cuda else float("nan")
        installs["plain"]()
        for name in calls:
            rows.append({"model": subject.name, "frames": num_frames, "latent_frames": subject.latent_frames(num_frames),
                         "variant": name, "seconds": statistics.median(times[name]),
                         "time_ratio": median_ratio(times, name, "plain"), "peak_mib": peaks[name] / MiB,
                         "memory_ratio": peaks[name] / peaks["plain"], "max_allocated_gib": max_alloc[name] / 2**30})
        print_rows(rows[-len(calls):], cuda)
        del calls
    return rows


def header(cuda: bool) -> str:
    return (f"{'frames':>6} {'latent':>6} {'variant':>7} {'s/step':>9} {'x plain':>7} {'peak MiB':>10} {'x plain':>7}"
            + (f" {'max GiB':>8}" if cuda else ""))


def print_rows(rows: list[dict], cuda: bool) -> None:
    for row in rows:
        print(f"{row['frames']:>6} {row['latent_frames']:>6} {row['variant']:>7} {row['seconds']:>9.4f} "
              f"{row['time_ratio']:>7.3f} {row['peak_mib']:>10.1f} {row['memory_ratio']:>7.3f}"
              + (f" {row['max_allocated_gib']:>8.2f}" if cuda else ""), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-wan", choices=TINY_WAN_MODELS, help="a tiny Wan model (offline)")
    parser.add_argument("--full", action="store_true",
                        help=f"the full-size {FULL_MODEL} transformer with random weights instead (CUDA only)")
    parser.add_argument("--frames", type=int, nargs="+", default=None,
                        help="output frames, 4n+1 >= 9 (default 17 41 81 161; 81 161 with --full)")
    add_run_options(parser, dtype=None, dtype_help="default float32, bfloat16 with --full")
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = [81, 161] if args.full else [17, 41, 81, 161]
    if any(f < 9 or (f - 1) % 4 for f in args.frames):
        parser.error(f"--frames: Wan takes 4n+1 frames, and {len(STATES)} synopsis states need at least "
                     f"{len(STATES)} latent frames (9 frames); got {args.frames}")
    if args.dtype is None:
        args.dtype = "bfloat16" if args.full else "float32"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.full and torch.device(args.device).type != "cuda":
        sys.exit(f"wan_step.py: --full runs the full-size {FULL_MODEL} transformer at 480x832 (5.7 GB of float32 "
                 "weights, an hour or more per step on a CPU core); use --device cuda")
    setup(args.threads)
    dtype = getattr(torch, args.dtype)
    cuda = torch.device(args.device).type == "cuda"
    print(machine())
    print(f"one step = one transformer call on a CFG batch of 2, timestep 500, {args.dtype} on {args.device}; "
          f"VSP: {len(STATES)} states, per-frame text; plain: one prompt, stock cross-attention; median of "
          f"{args.rounds} interleaved rounds after a warm-up; peak = allocator memory above the inputs and weights")
    subject = full_subject(args.device, dtype) if args.full else tiny_subject(args.model, args.device, dtype)
    print(f"\n{subject.name}\n{header(cuda)}")
    rows = measure(subject, args.frames, args.rounds, args.device)
    if args.csv:
        write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
