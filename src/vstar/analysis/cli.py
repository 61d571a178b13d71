"""The ``evaluate`` and ``analyze`` commands; ``register(app)`` adds them to the ``vstar`` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``analyze`` to ``app`` (errors as one line, like every vstar command)."""
    from vstar.cli import friendly_errors

    app.command("evaluate")(friendly_errors(evaluate))


def write_json(data: Any, path: Path, overwrite: bool) -> None:
    """Indented JSON, written atomically."""
    from vstar.io import atomic_path

    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def load_model(model: str | None, device: str | None) -> Any:
    """The backbone named ``model`` (None when not given) in float32 on ``device``."""
    if model is None:
        return None
    from vstar.backbones import load_backbone
    from vstar.devices import resolve_device

    return load_backbone(model, device=resolve_device(device), dtype="fp32")


def evaluate(
    videos: Annotated[list[Path], typer.Argument(help="Videos to measure: .mp4, .gif or folders of PNG frames.")],
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Similarity metric, repeatable: ssim, mae, histogram (default: all three), latent (needs --model), dreamsim (optional extra).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every measurement to this JSON file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Plot change and similarity by interval (.png, .pdf, .svg).")] = None,
    model: Annotated[str | None, typer.Option(help="Model whose VAE the latent similarity uses (see `vstar models`).")] = None,
    device: Annotated[str | None, typer.Option(help="cuda, mps, cpu for --model (default: best available).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing --json / --plot files.")] = False,
) -> None:
    """Measure how much videos change: flicker, optical flow, dynamic degree, change from the first frame and
    inter-frame similarity (paper section 4.1, figure S.1); several videos side by side."""
    from vstar.analysis.evaluation import check_metrics, evaluate_video, summary_table
    from vstar.analysis.plots import check_figure_path, evaluation_figure, save_figure
    from vstar.analysis.similarity import WEIGHT_FREE_METRICS
    from vstar.backbones.registry import get_spec
    from vstar.io import check_writable, read_video

    metrics = list(metric or WEIGHT_FREE_METRICS)
    if model is not None:
        get_spec(model)
    check_metrics(metrics, has_model=model is not None)
    for video in videos:
        if not video.exists():
            raise FileNotFoundError(f"{video} does not exist; give an .mp4, a .gif or a folder of PNG frames")
    if plot is not None:
        check_figure_path(plot)
        check_writable(plot, overwrite)
    if json_out is not None:
        check_writable(json_out, overwrite)

    backbone = load_model(model, device)
    results = [{"path": str(video), **evaluate_video(read_video(video), metrics, backbone)} for video in videos]
    names = [video.name for video in videos]
    typer.echo(summary_table(results, names))
    if json_out is not None:
        write_json({"videos": results}, json_out, overwrite)
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        save_figure(evaluation_figure(results, names), plot, overwrite)
        typer.echo(f"wrote {plot}")
