"""``vstar models``: the base models with their recommended settings and whether their weights are here."""

from __future__ import annotations

import typer


def models() -> None:
    """List the base models with their recommended settings and whether their weights are available here."""
    from vstar.backbones import list_backbones, weights_available

    typer.echo(f"{'name':<18} {'size':>9} {'frames':>6} {'guid.':>5}  {'weights':<10} source")
    for spec in list_backbones():
        d = spec.defaults
        frames = f"{d.num_frames}" + (f"/{d.max_frames}" if d.max_frames else "")
        available = "built-in" if spec.tiny else ("cached" if weights_available(spec) else "download")
        source = ", ".join(spec.model_ids) or ("random weights, built in code" if spec.seeded else "shipped with vstar")
        typer.echo(f"{spec.name:<18} {d.height:>4}x{d.width:<4} {frames:>6} {d.guidance_scale:>5g}  "
                   f"{available:<10} {source}")
        typer.echo(f"{'':<18} {spec.description}")
