"""``vstar convert-videocrafter2 CKPT OUT_DIR``: the original checkpoint -> a diffusers-style folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vstar.cli.common import friendly_errors

DTYPES = ("float32", "float16", "bfloat16")


@friendly_errors
def convert_videocrafter2(
    ckpt: Annotated[Path, typer.Argument(help="the original VideoCrafter2 model.ckpt (or .safetensors)")],
    out_dir: Annotated[Path, typer.Argument(help="folder to write unet/ vae/ text_encoder/ tokenizer/ scheduler/")],
    dtype: Annotated[str, typer.Option(help=f"dtype of the written weights: {', '.join(DTYPES)}")] = "float32",
    overwrite: Annotated[bool, typer.Option(help="replace an earlier conversion in OUT_DIR (nothing else)")] = False,
) -> None:
    """Convert the original VideoCrafter2 checkpoint strictly (every key mapped, shapes checked)."""
    import torch

    from vstar.backbones.videocrafter2.convert import convert_videocrafter2_checkpoint
    from vstar.outputs import check_writable, claim_outputs

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint file at {ckpt}; give the original model.ckpt (or .safetensors)")
    check_writable(out_dir, overwrite, "model")
    with claim_outputs(out_dir):  # a ConversionError (a ValueError) names the first unmapped key: exit 2
        components = convert_videocrafter2_checkpoint(ckpt, out_dir, torch_dtype=getattr(torch, dtype),
                                                      overwrite=overwrite)
    sizes = {name: sum(p.numel() for p in getattr(components, name).parameters())
             for name in ("unet", "vae", "text_encoder")}
    typer.echo(f"wrote {out_dir} (" + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in sizes.items()) + " parameters)")
