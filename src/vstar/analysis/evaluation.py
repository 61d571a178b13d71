"""One video's measurements as plain data (``vstar evaluate``): motion, change and frame similarity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vstar.analysis.metrics import (
    as_video,
    change_from_first,
    dynamic_degree,
    flicker,
    flow_magnitude,
    optical_flow,
)
from vstar.analysis.similarity import (
    METRICS,
    WEIGHT_FREE_METRICS,
    check_dreamsim_installed,
    similarity_by_interval,
    similarity_matrix,
)


def check_metrics(metrics: Sequence[str], has_model: bool) -> list[str]:
    """The similarity metrics to compute, checked before any work: known names, a model for ``latent``."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown similarity metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if "latent" in metrics and not has_model:
        raise ValueError("the latent similarity encodes frames with a model's VAE; give --model or drop latent")
    if "dreamsim" in metrics:
        check_dreamsim_installed()
    return list(dict.fromkeys(metrics))


def evaluate_video(frames: np.ndarray, metrics: Sequence[str] = WEIGHT_FREE_METRICS,
                   backbone: Any = None) -> dict[str, Any]:
    """Every measurement of ``frames`` ``(F, H, W, 3)`` (uint8, or float in [0, 1]) as JSON-ready data.

    Keys: ``frames``, ``flicker``, ``flow_magnitude`` (px per frame), ``dynamic_degree`` (the share of frame
    pairs that move, :func:`~vstar.analysis.metrics.dynamic_degree`), ``dynamic`` (VBench's per-video verdict),
    ``change_from_first`` (F values), ``similarity`` (metric -> F x F lists) and ``similarity_by_interval``
    (metric -> {interval: [min, median, max]}, intervals as text keys as JSON has them).
    """
    video = as_video(frames)
    metrics = check_metrics(metrics, has_model=backbone is not None)
    flow = optical_flow(video)
    dynamic = dynamic_degree(video, flow)
    matrices = {m: similarity_matrix(video, m, backbone) for m in metrics}
    return {
        "frames": int(video.shape[0]),
        "flicker": flicker(video),
        "flow_magnitude": flow_magnitude(video, flow),
        "dynamic_degree": dynamic.share,
        "dynamic": dynamic.dynamic,
        "change_from_first": change_from_first(video).tolist(),
        "similarity": {m: matrix.tolist() for m, matrix in matrices.items()},
        "similarity_by_interval": {m: {str(d): v for d, v in similarity_by_interval(matrix).items()}
                                   for m, matrix in matrices.items()},
    }


COLUMN_GAP = 2  # spaces at least between the columns of the summary table


def _neighbours(result: dict[str, Any], metric: str) -> str:
    """The median similarity of neighbouring frames, or ``-`` for a one-frame matrix."""
    interval = result["similarity_by_interval"][metric].get("1")
    return f"{interval[1]:.3f}" if interval else "-"


def summary_table(results: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """A text table, one column per video: frames, flicker, flow, dynamic degree, last change from the first
    frame and each metric's median similarity of neighbouring and of first-to-last frames. Labels are
    left-aligned; each column is right-aligned, as wide as its widest cell (name or value) plus the gap."""
    rows: list[tuple[str, list[str]]] = [
        ("frames", [str(r["frames"]) for r in results]),
        ("flicker", [f"{r['flicker']:.4f}" for r in results]),
        ("flow px/frame", [f"{r['flow_magnitude']:.3f}" for r in results]),
        ("dynamic degree", [f"{r['dynamic_degree']:.2f}" + (" (dynamic)" if r["dynamic"] else "") for r in results]),
        ("change last-first", [f"{r['change_from_first'][-1]:.4f}" for r in results]),
    ]
    for metric in results[0]["similarity"]:
        rows.append((f"{metric} neighbours", [_neighbours(r, metric) for r in results]))
        rows.append((f"{metric} first-last", [f"{r['similarity'][metric][0][-1]:.3f}" for r in results]))
    rows.insert(0, ("", list(names)))
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in rows) + COLUMN_GAP for i in range(len(names))]
    return "\n".join(f"{label:<{label_width}}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
                     for label, values in rows)
