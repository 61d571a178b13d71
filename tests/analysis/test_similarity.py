"""Inter-frame similarity matrices: static videos are self-similar, a fade decays with the frame distance."""

import sys

import numpy as np
import pytest
import torch
from synthetic_videos import fade, pan, static

from vstar.analysis.similarity import (
    WEIGHT_FREE_METRICS,
    cosine_matrix,
    similarity_by_interval,
    similarity_matrix,
)


@pytest.mark.parametrize("metric", WEIGHT_FREE_METRICS)
def test_a_static_video_is_similar_everywhere(metric):
    matrix = similarity_matrix(static(frames=5), metric)
    np.testing.assert_allclose(matrix, np.ones((5, 5)), atol=1e-6)


@pytest.mark.parametrize("metric", WEIGHT_FREE_METRICS)
def test_similarity_is_symmetric_with_a_unit_diagonal_and_falls_with_distance(metric):
    matrix = similarity_matrix(pan(1.0, frames=6, size=64), metric)
    assert matrix.shape == (6, 6) and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), np.ones(6))
    medians = [v[1] for v in similarity_by_interval(matrix).values()]
    assert medians[0] > medians[-1]


def test_mae_of_a_fade_is_one_minus_the_level_difference():
    matrix = similarity_matrix(fade(frames=5), "mae")
    levels = np.linspace(0, 1, 5)
    np.testing.assert_allclose(matrix, 1 - np.abs(levels[:, None] - levels[None, :]), atol=1e-6)


def test_similarity_by_interval_gives_min_median_max_per_distance():
    matrix = np.array([[1.0, 0.9, 0.5], [0.9, 1.0, 0.7], [0.5, 0.7, 1.0]])
    assert similarity_by_interval(matrix) == {1: [0.7, 0.8, 0.9], 2: [0.5, 0.5, 0.5]}


def test_cosine_matrix_of_features():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(cosine_matrix(features), [[1, 0, 0.5**0.5], [0, 1, 0.5**0.5], [0.5**0.5, 0.5**0.5, 1]],
                               atol=1e-12)


def test_latent_similarity_uses_the_models_vae():
    from vstar.backbones import load_backbone

    backbone = load_backbone("tiny-modelscope", device="cpu")
    matrix = similarity_matrix(static(frames=3, size=64), "latent", backbone=backbone)
    np.testing.assert_allclose(matrix, np.ones((3, 3)), atol=1e-6)
    moving = similarity_matrix(pan(4.0, frames=3, size=64), "latent", backbone=backbone)
    assert moving[0, 2] < moving[0, 1] < 1


def test_model_metrics_say_what_they_need(monkeypatch):
    with pytest.raises(ValueError, match="latent similarity needs a model"):
        similarity_matrix(static(frames=2), "latent")
    monkeypatch.setitem(sys.modules, "dreamsim", None)  # not installed
    with pytest.raises(RuntimeError, match=r"pip install .*dreamsim"):
        similarity_matrix(static(frames=2), "dreamsim")
    with pytest.raises(ValueError, match="choose one of ssim, mae, histogram, latent, dreamsim"):
        similarity_matrix(static(frames=2), "lpips")
