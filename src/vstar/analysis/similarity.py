"""Inter-frame similarity matrices (paper figures 8, 9 and S.1) with weight-free and model-based backends.

Every backend maps a video ``(F, H, W, 3)`` to a symmetric ``(F, F)`` float64 matrix with ones on the
diagonal (1 = identical frames):

- ``ssim``: structural similarity (scikit-image), colour channels together;
- ``mae``: 1 - mean absolute difference of pixels in [0, 1];
- ``histogram``: intersection of normalised 8x8x8 RGB histograms (OpenCV);
- ``latent``: cosine similarity of the frames' VAE latents (needs a backbone);
- ``dreamsim``: 1 - DreamSim distance (the paper's metric; the optional ``dreamsim`` package and its weights).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity

from vstar.analysis.metrics import as_video

WEIGHT_FREE_METRICS: tuple[str, ...] = ("ssim", "mae", "histogram")
METRICS: tuple[str, ...] = (*WEIGHT_FREE_METRICS, "latent", "dreamsim")
HISTOGRAM_BINS = 8


def _pairwise(items: Sequence[Any], similarity: Callable[[Any, Any], float]) -> np.ndarray:
    """The symmetric ``(F, F)`` matrix of ``similarity`` over every pair of the ``F`` items, ones on the diagonal."""
    matrix = np.eye(len(items))
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            matrix[i, j] = matrix[j, i] = similarity(items[i], items[j])
    return matrix


def ssim_matrix(video: np.ndarray) -> np.ndarray:
    """Structural similarity of every pair of frames (window 7, or the largest odd size that fits)."""
    window = min(7, min(video.shape[1:3]) // 2 * 2 - 1)
    if window < 3:
        raise ValueError(f"ssim needs frames of at least 3x3 pixels, got {video.shape[1]}x{video.shape[2]}")
    return _pairwise(video, lambda a, b: structural_similarity(a, b, channel_axis=-1, data_range=1.0,
                                                               win_size=window))


def mae_matrix(video: np.ndarray) -> np.ndarray:
    """1 - mean absolute difference of every pair of frames."""
    flat = video.reshape(len(video), -1)
    return 1.0 - np.stack([np.abs(flat - frame).mean(-1, dtype=np.float64) for frame in flat])  # O(F * pixels) memory


def histogram_matrix(video: np.ndarray) -> np.ndarray:
    """Intersection of normalised joint RGB histograms (8 bins per channel) of every pair of frames."""
    hists = []
    for frame in video:
        image = (frame * 255 + 0.5).astype(np.uint8)
        hist = cv2.calcHist([image], [0, 1, 2], None, [HISTOGRAM_BINS] * 3, [0, 256] * 3)
        hists.append(hist / hist.sum())
    return _pairwise(hists, lambda a, b: cv2.compareHist(a, b, cv2.HISTCMP_INTERSECT))


def cosine_matrix(features: torch.Tensor) -> np.ndarray:
    """Cosine similarity of ``(F, D)`` features, float64 ``(F, F)`` with an exact unit diagonal."""
    unit = torch.nn.functional.normalize(features.double().flatten(1), dim=-1)
    matrix = (unit @ unit.T).clamp(-1, 1).cpu().numpy()
    np.fill_diagonal(matrix, 1.0)
    return matrix


def latent_matrix(video: np.ndarray, backbone: Any) -> np.ndarray:
    """Cosine similarity of the frames' VAE latents (``backbone.encode_video``): ``(F, F)``, or ``(L, L)``
    over latent frames for a VAE that compresses ``k`` frames into one (the first ``k*n + 1`` frames used)."""
    k = backbone.defaults.temporal_compression
    video = video[: (len(video) - 1) // k * k + 1]
    latents = backbone.encode_video(torch.from_numpy(video).permute(0, 3, 1, 2)[None])  # (1, C, L, h, w)
    return cosine_matrix(latents[0].transpose(0, 1))


DREAMSIM_HELP = ("the dreamsim similarity needs the optional dreamsim package and its weights: "
                 "pip install 'vstar-video[dreamsim]' (or pip install dreamsim), then run once online so it "
                 "downloads its weights (about 1 GB) to {cache}, or copy them there; VSTAR_DREAMSIM_CACHE sets "
                 "the folder. The weight-free metrics (ssim, mae, histogram) need nothing")


def dreamsim_cache() -> str:
    """Where DreamSim's weights are looked up (``VSTAR_DREAMSIM_CACHE``, default ``~/.cache/dreamsim``)."""
    return os.environ.get("VSTAR_DREAMSIM_CACHE", os.path.expanduser("~/.cache/dreamsim"))


def check_dreamsim_installed() -> None:
    """Raise a RuntimeError saying how to get DreamSim when the optional package is missing (checked before
    any work, without importing it)."""
    if importlib.util.find_spec("dreamsim") is None:
        raise RuntimeError(DREAMSIM_HELP.format(cache=dreamsim_cache()))


def dreamsim_matrix(video: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """1 - DreamSim distance of every pair of frames (DreamSim's default ensemble model)."""
    cache = dreamsim_cache()
    check_dreamsim_installed()
    from dreamsim import dreamsim

    try:
        model, preprocess = dreamsim(pretrained=True, device=str(device), cache_dir=cache)
    except Exception as exc:  # no network and no weights, a broken download, ...
        raise RuntimeError(f"could not load the DreamSim weights ({type(exc).__name__}: {exc}); "
                           + DREAMSIM_HELP.format(cache=cache)) from None
    from PIL import Image

    with torch.no_grad():
        batch = torch.cat([preprocess(Image.fromarray((f * 255 + 0.5).astype(np.uint8))) for f in video]).to(device)
        embeddings = model.embed(batch)
    return cosine_matrix(embeddings)  # DreamSim's distance is 1 - cosine of these embeddings


def similarity_matrix(frames: np.ndarray, metric: str = "ssim", backbone: Any = None) -> np.ndarray:
    """The ``(F, F)`` float64 similarity of every pair of frames of ``frames`` ``(F, H, W, 3)`` under ``metric``."""
    if metric not in METRICS:
        raise ValueError(f"unknown similarity metric {metric!r}; choose one of {', '.join(METRICS)}")
    video = as_video(frames)
    if metric == "latent":
        if backbone is None:
            raise ValueError("the latent similarity needs a model to encode the frames; pass --model (backbone=)")
        return latent_matrix(video, backbone)
    if metric == "dreamsim":
        return dreamsim_matrix(video, backbone.device if backbone is not None else "cpu")
    return {"ssim": ssim_matrix, "mae": mae_matrix, "histogram": histogram_matrix}[metric](video)


def similarity_by_interval(matrix: np.ndarray) -> dict[int, list[float]]:
    """Interval d -> ``[min, median, max]`` of the similarities of frames d apart (figure S.1), d = 1 .. F-1."""
    matrix = np.asarray(matrix)
    return {d: [float(np.min(v)), float(np.median(v)), float(np.max(v))]
            for d in range(1, len(matrix)) for v in [np.diagonal(matrix, offset=d)]}
