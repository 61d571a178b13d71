"""``vstar convert-videocrafter2 CKPT OUT_DIR``: the original checkpoint -> a diffusers-style folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DTYPES = ("float32", "float16", "bfloat16")


def convert_command(
    ckpt: Annotated[Path, typer.Argument(help="the original VideoCrafter2 model.ckpt (or .safetensors)")],
    out_dir: Annotated[Path, typer.Argument(help="folder to write unet/ vae/ text_encoder/ tokenizer/ scheduler/")],
    dtype: Annotated[str, typer.Option(help=f"dtype of the written weights: {', '.join(DTYPES)}")] = "float32",
    overwrite: Annotated[bool, typer.Option(help="write into OUT_DIR even if it is not empty")] = False,
) -> None:
    """Convert the original VideoCrafter2 checkpoint strictly (every key mapped, shapes checked)."""
    import torch

    from .convert import ConversionError, convert_videocrafter2_checkpoint

    if dtype not in DTYPES:
        raise typer.BadParameter(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not ckpt.is_file():
        raise typer.BadParameter(f"no checkpoint file at {ckpt}", param_hint="CKPT")
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} is a file; give a folder", param_hint="OUT_DIR")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise typer.BadParameter(f"{out_dir} is not empty; pass --overwrite to write into it", param_hint="OUT_DIR")
    try:
        components = convert_videocrafter2_checkpoint(ckpt, out_dir, torch_dtype=getattr(torch, dtype))
    except ConversionError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    except OSError as err:
        typer.secho(f"error: cannot write {out_dir}: {err.strerror or err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    sizes = {name: sum(p.numel() for p in getattr(components, name).parameters())
             for name in ("unet", "vae", "text_encoder")}
    typer.echo(f"wrote {out_dir} (" + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in sizes.items()) + " parameters)")


def register(app: typer.Typer) -> None:
    """Add ``convert-videocrafter2`` to the ``vstar`` command."""
    app.command("convert-videocrafter2")(convert_command)
