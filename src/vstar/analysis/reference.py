"""A reference video's inter-frame similarity as TAR's regularization matrix (paper figure 9).

The reference's ``(R, R)`` similarity (a metric of :mod:`vstar.analysis.similarity`) is kept as it is in the
generation config and the sidecar, so ``--from`` needs no copy of the video; at generation time it is
resampled to the generated frame count and normalised to a unit diagonal (:func:`reference_band`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REFERENCE_METRICS: tuple[str, ...] = ("ssim", "mae", "histogram", "dreamsim")  # "latent" would need the model


@dataclass(frozen=True)
class TARReference:
    """A reference video's similarity matrix for TAR: ``source`` (where it came from, informative),
    ``metric`` and ``similarity`` (``R x R`` nested tuples, symmetric, ones on the diagonal)."""

    source: str
    metric: str
    similarity: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        rows = self.similarity
        if len(rows) < 2 or any(len(row) != len(rows) for row in rows):
            raise ValueError(f"a TAR reference needs a square similarity matrix of >= 2 frames ({self.source})")
        if not all(isinstance(v, int | float) and math.isfinite(v) for row in rows for v in row):
            raise ValueError(f"the TAR reference's similarity matrix holds non-numbers ({self.source})")
        if any(not rows[i][i] > 0 for i in range(len(rows))):
            raise ValueError(f"the TAR reference's similarity matrix needs a positive diagonal ({self.source})")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "metric": self.metric, "similarity": [list(row) for row in self.similarity]}

    @classmethod
    def from_dict(cls, data: Any) -> TARReference:
        if not isinstance(data, dict) or set(data) != {"source", "metric", "similarity"}:
            raise ValueError("tar_reference must be an object with source, metric and similarity (or null)")
        if not isinstance(data["similarity"], list) or not all(isinstance(r, list) for r in data["similarity"]):
            raise ValueError("tar_reference.similarity must be a list of rows")
        return cls(str(data["source"]), str(data["metric"]), tuple(tuple(row) for row in data["similarity"]))

    @classmethod
    def from_matrix(cls, matrix: Sequence[Sequence[float]], source: str, metric: str) -> TARReference:
        return cls(source, metric, tuple(tuple(float(v) for v in row) for row in matrix))


def reference_from_video(path: str | Path, metric: str = "ssim") -> TARReference:
    """Read the video at ``path`` and take its ``(R, R)`` similarity under ``metric`` (weight-free or dreamsim)."""
    from vstar.analysis.similarity import similarity_matrix
    from vstar.io import read_video

    if metric not in REFERENCE_METRICS:
        raise ValueError(f"--tar-reference-metric must be one of {', '.join(REFERENCE_METRICS)}, got {metric!r}")
    frames = read_video(path, f"the TAR reference {path}")
    if len(frames) < 2:
        raise ValueError(f"the TAR reference {path} has {len(frames)} frame; give a video of at least 2 frames")
    return TARReference.from_matrix(similarity_matrix(frames, metric), str(path), metric)


def resample_matrix(matrix: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(R, R)`` -> ``(F, F)`` float64: bilinear samples at ``F`` evenly spread positions along both axes,
    then ``M[i, j] / sqrt(M[i, i] M[j, j])`` so that the diagonal is exactly 1."""
    size = matrix.shape[0]  # >= 2
    position = torch.linspace(0, size - 1, num_frames, dtype=torch.float64)
    low = position.floor().long().clamp(max=size - 2)
    weight = (position - low)[:, None]
    rows = matrix.double()[low] * (1 - weight) + matrix.double()[low + 1] * weight  # (F, R)
    both = rows[:, low] * (1 - weight.T) + rows[:, low + 1] * weight.T  # (F, F)
    diagonal = both.diagonal().sqrt()
    return both / diagonal[:, None] / diagonal[None, :]


def reference_band(reference: TARReference, num_frames: int) -> torch.Tensor:
    """TAR's ``(F, F)`` float32 regularization matrix from ``reference`` for ``num_frames`` frames."""
    return resample_matrix(torch.tensor(reference.similarity, dtype=torch.float64), num_frames).float()
