"""Figures of the analysis (matplotlib, no display needed): attention heatmaps per level (paper figures 4
and 10), TAR's dA matrices (figure S.10) and a video's change and frame similarity (figure S.1)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from vstar.outputs import StagedResult, figure_metadata, staging
from vstar.tar import level_name

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def check_figure_path(path: Path) -> None:
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"a plot is written as {', '.join(FIGURE_SUFFIXES)}; got {path.name}: name it e.g. plot.png")


def save_figure(figure: Figure, path: Path, overwrite: bool = False, *, result: StagedResult | None = None) -> Path:
    """Write ``figure`` to ``path`` in the format its suffix names, with metadata naming vstar (so that
    ``overwrite`` may replace it later); staged into ``result`` when given, else on its own."""
    import vstar

    check_figure_path(path)
    with staging(result, overwrite) as staged:
        tmp = staged.stage(path, "figure")
        figure.savefig(tmp, format=path.suffix[1:].lower(), dpi=150, bbox_inches="tight",
                       metadata=figure_metadata(path.suffix, vstar.__version__))
    return path


MAX_FIGURE_ROWS = 8  # a transformer's 30-40 blocks are shown as this many ranges of blocks at most


def block_ranges(by_block: Mapping[int, torch.Tensor], rows: int = MAX_FIGURE_ROWS) -> dict[str, torch.Tensor]:
    """A transformer's per-block maps as at most ``rows`` consecutive ranges (``"b0-4"``: the mean of blocks 0
    to 4), each block in one range; fewer blocks stay one per row (``"b3"``)."""
    blocks = sorted(by_block)
    groups = [list(group) for group in np.array_split(np.array(blocks), min(rows, len(blocks)))]
    return {f"b{g[0]}" + (f"-{g[-1]}" if len(g) > 1 else ""): torch.stack([by_block[b] for b in g]).mean(0)
            for g in groups}


def attention_figure(maps: Mapping[str, Mapping[int | str, torch.Tensor]], title: str = "",
                     unit: str = "level") -> Figure:
    """Heatmaps of ``(F, F)`` attention maps: a row per level (``unit="block"``: per transformer block, or per
    range of blocks named by text, see :func:`block_ranges`), a column per video (``name -> level -> map``), so
    that real and generated videos sit side by side. The colour scale is shared by all panels."""
    names = list(maps)
    levels = list(dict.fromkeys(level for by_level in maps.values() for level in sorted(by_level, key=_order)))
    top = max(float(m.max()) for by_level in maps.values() for m in by_level.values())
    figure = Figure(figsize=(2.4 * len(names) + 0.8, 2.2 * len(levels)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(levels), len(names), squeeze=False))
    image = None
    for row, level in enumerate(levels):
        for col, name in enumerate(names):
            ax = axes[row, col]
            if level in maps[name]:
                image = ax.imshow(maps[name][level].float().numpy(), cmap="viridis", vmin=0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(textwrap.fill(name, 32), fontsize=8)  # long prompts wrap instead of overlapping
            if col == 0:
                name = level if isinstance(level, str) else level_name(level, unit)
                ax.set_ylabel(f"{unit}{'s' if '-' in name else ''} {name}", fontsize=9)
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.8, label="attention")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def band_figure(matrices: Mapping[str, torch.Tensor]) -> Figure:
    """TAR's ``(F, F)`` regularization matrices side by side (label -> matrix), values in [0, 1]."""
    figure = Figure(figsize=(2.4 * len(matrices) + 0.8, 2.6), layout="constrained")
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (label, matrix) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(matrix.float().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="dA")
    return figure


def evaluation_figure(results: Sequence[dict[str, Any]], names: Sequence[str]) -> Figure:
    """Per video (one line each): change from the first frame, and for each similarity metric the median
    similarity of frames d apart with its min-max range (figure S.1)."""
    metrics = list(results[0]["similarity_by_interval"])
    figure = Figure(figsize=(3.6 * (1 + len(metrics)), 3.0), layout="constrained")
    axes = figure.subplots(1, 1 + len(metrics), squeeze=False)[0]
    for result, name in zip(results, names, strict=True):
        axes[0].plot(result["change_from_first"], marker=".", label=name)
        for ax, metric in zip(axes[1:], metrics, strict=True):
            by_interval = result["similarity_by_interval"][metric]
            intervals = [int(d) for d in by_interval]
            low, median, high = np.array(list(by_interval.values())).T
            ax.plot(intervals, median, marker=".", label=name)
            ax.fill_between(intervals, low, high, alpha=0.2)
    axes[0].set(title="change from the first frame", xlabel="frame", ylabel="mean |frame - frame 0|")
    for ax, metric in zip(axes[1:], metrics, strict=True):
        ax.set(title=f"{metric} similarity by interval", xlabel="frames apart", ylabel="min / median / max")
    axes[0].legend(fontsize=8)
    return figure


def _order(level: int | str) -> int:
    """Levels in order, ranges of blocks (``"b10-19"``) by their first block."""
    return level if isinstance(level, int) else int(level.removeprefix("b").split("-")[0])
