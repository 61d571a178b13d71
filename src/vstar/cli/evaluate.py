"""``vstar evaluate VIDEO...``: how much videos change (flicker, flow, dynamic degree, similarity), side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vstar.cli.common import friendly_errors, load_model, write_json


@friendly_errors
def evaluate(
    videos: Annotated[list[Path], typer.Argument(help="Videos to measure (.mp4, .gif or folders of PNG frames), or batch folders (vstar batch --out-dir) to compare item by item.")],
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Similarity metric, repeatable: ssim, mae, histogram (default: all three), latent (needs --model), dreamsim (optional extra).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every measurement to this JSON file.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Batch folders: write one row per folder and item to this CSV file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Plot change and similarity by interval (.png, .pdf, .svg).")] = None,
    model: Annotated[str | None, typer.Option(help="Model whose VAE the latent similarity uses (see `vstar models`).")] = None,
    device: Annotated[str | None, typer.Option(help="cuda, mps, cpu for --model (default: best available).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing --json / --plot files.")] = False,
) -> None:
    """Measure how much videos change: flicker, optical flow, dynamic degree, change from the first frame and
    inter-frame similarity (paper section 4.1, figure S.1); several videos side by side.

    Given batch folders: the same per video, the mean and standard deviation per folder, and the paired
    differences of each folder from the first on the items both have (items one folder lacks are named).
    """
    from vstar.analysis.comparison import is_batch_folder
    from vstar.analysis.evaluation import check_metrics, evaluate_video, summary_table
    from vstar.analysis.plots import check_figure_path, evaluation_figure, save_figure
    from vstar.analysis.similarity import WEIGHT_FREE_METRICS
    from vstar.backbones.registry import get_spec
    from vstar.io import read_video
    from vstar.outputs import check_writable, claim_outputs, staged_result

    metrics = list(metric or WEIGHT_FREE_METRICS)
    if model is not None:
        get_spec(model)
    check_metrics(metrics, has_model=model is not None)
    folders = [video for video in videos if is_batch_folder(video)]
    if folders:
        if len(folders) != len(videos):
            raise ValueError(f"give videos or batch folders, not both ({folders[0]} is a batch folder, "
                             f"{next(v for v in videos if v not in folders)} is not)")
        return compare_folders(folders, metrics, json_out, csv_out, plot, model, device, overwrite)
    if csv_out is not None:
        raise ValueError("--csv writes the rows of batch folders; give folders (vstar batch --out-dir) or drop --csv")
    clips = [read_video(video) for video in videos]  # a missing or unreadable video fails before any work
    if plot is not None:
        check_figure_path(plot)
        check_writable(plot, overwrite, "figure")
    if json_out is not None:
        check_writable(json_out, overwrite, "evaluation")
    outputs = [path for path in (json_out, plot) if path is not None]

    with claim_outputs(*outputs):
        backbone = load_model(model, device)
        results = [{"path": str(video), **evaluate_video(clip, metrics, backbone)}
                   for video, clip in zip(videos, clips, strict=True)]
        names = [video.name for video in videos]
        typer.echo(summary_table(results, names))
        with staged_result(overwrite) as staged:  # the JSON and the plot: both or neither
            if json_out is not None:
                write_json({"videos": results}, json_out, staged, "evaluation")
            if plot is not None:
                save_figure(evaluation_figure(results, names), plot, result=staged)
    for path in outputs:
        typer.echo(f"wrote {path}")


def compare_folders(paths: list[Path], metrics: list[str], json_out: Path | None, csv_out: Path | None,
                    plot: Path | None, model: str | None, device: str | None, overwrite: bool) -> None:
    """``vstar evaluate DIR [DIR...]``: per-item rows, the aggregate and the paired differences."""
    from vstar.analysis.comparison import (
        batch_folders,
        compare,
        comparison_figure,
        comparison_table,
        rows_csv,
        scalars,
    )
    from vstar.analysis.evaluation import evaluate_video
    from vstar.analysis.plots import check_figure_path, save_figure
    from vstar.io import read_video
    from vstar.outputs import check_writable, claim_outputs, file_sha256, staged_result

    videos = batch_folders(paths)
    if plot is not None:
        check_figure_path(plot)
        check_writable(plot, overwrite, "figure")
    if json_out is not None:
        check_writable(json_out, overwrite, "evaluation")
    if csv_out is not None:
        check_writable(csv_out, overwrite, "table", json_out)
    outputs = [path for path in (json_out, csv_out, plot) if path is not None]

    with claim_outputs(*outputs):
        backbone = load_model(model, device)
        rows = {label: {name: scalars(evaluate_video(read_video(path), metrics, backbone))
                        for name, path in items.items()} for label, items in videos.items()}
        comparison = compare(rows)
        typer.echo(comparison_table(comparison))
        with staged_result(overwrite) as staged:  # the JSON, the CSV and the plot: all or none
            files = {}
            if csv_out is not None:
                tmp = staged.stage(csv_out, "table", json_out)
                tmp.write_text(rows_csv(rows), encoding="utf-8")
                files[csv_out.name] = file_sha256(tmp)
            if json_out is not None:
                write_json({"folders": {label: label for label in videos}, "items": rows,
                            **comparison, "files": files}, json_out, staged, "evaluation")
            if plot is not None:
                save_figure(comparison_figure(comparison), plot, result=staged)
    for path in outputs:
        typer.echo(f"wrote {path}")
