"""Numbers that compare temporal attention maps: how far from the diagonal the attention reaches."""

from __future__ import annotations

import torch


def _check_square(attention: torch.Tensor) -> None:
    if attention.ndim < 2 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention maps must be (..., F, F), got {tuple(attention.shape)}")


def band_score(attention: torch.Tensor) -> torch.Tensor:
    """Expected frame distance ``mean_i sum_j A[i, j] |i - j|`` of row-stochastic maps ``(..., F, F)``.

    0 for the identity, ``(F^2 - 1) / (3F)`` for uniform attention; a band of width w scores about w/2.
    Returns a float64 tensor of shape ``(...)``.
    """
    _check_square(attention)
    idx = torch.arange(attention.shape[-1], dtype=torch.float64, device=attention.device)
    distance = (idx[:, None] - idx[None, :]).abs()
    return (attention.double() * distance).sum(-1).mean(-1)


def diagonal_mass(attention: torch.Tensor) -> torch.Tensor:
    """``mean_i A[i, i]`` of maps ``(..., F, F)``: 1 for the identity, 1/F for uniform attention; float64 ``(...)``."""
    _check_square(attention)
    return attention.double().diagonal(dim1=-2, dim2=-1).mean(-1)
