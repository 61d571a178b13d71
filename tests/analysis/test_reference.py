"""A reference video's frame similarity as TAR's dA (paper figure 9): resampling, the config, the pipeline."""

import math

import numpy as np
import pytest
import torch
from analysis_models import seeded_generation
from synthetic_videos import pan, static

from vstar import TARConfig
from vstar.analysis.reference import TARReference, reference_band, reference_from_video, resample_matrix
from vstar.config import GenerationConfig
from vstar.io import write_video
from vstar.tar import TARProcessor
from vstar.temporal_attention import temporal_attention_layers


def test_upsampling_two_frames_to_three_by_hand():
    # bilinear at positions 0, 0.5, 1: the middle row and column are 0.75; then a unit diagonal
    got = resample_matrix(torch.tensor([[1.0, 0.5], [0.5, 1.0]]), 3)
    middle = 0.75 / math.sqrt(0.75)
    want = torch.tensor([[1.0, middle, 0.5], [middle, 1.0, middle], [0.5, middle, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_same_size_keeps_the_matrix_and_any_size_has_a_unit_diagonal():
    rng = np.random.default_rng(0)
    base = rng.random((6, 6))
    matrix = torch.tensor(base @ base.T + np.eye(6))
    matrix = matrix / matrix.diagonal().sqrt()[:, None] / matrix.diagonal().sqrt()[None, :]
    torch.testing.assert_close(resample_matrix(matrix, 6), matrix, atol=1e-12, rtol=0)
    for frames in (2, 5, 17, 64):
        band = reference_band(TARReference.from_matrix(matrix.tolist(), "x", "ssim"), frames)
        assert band.shape == (frames, frames) and band.dtype == torch.float32
        torch.testing.assert_close(band.diagonal(), torch.ones(frames), atol=1e-6, rtol=0)


def test_a_static_video_gives_all_ones_and_a_moving_one_a_band(tmp_path):
    write_video(static(frames=6, size=32), tmp_path / "still.mp4")
    write_video(pan(2.0, frames=6, size=32), tmp_path / "pan.mp4")
    still = reference_from_video(tmp_path / "still.mp4")
    torch.testing.assert_close(reference_band(still, 16), torch.ones(16, 16), atol=1e-6, rtol=0)
    moving = np.array(reference_from_video(tmp_path / "pan.mp4", "mae").similarity)
    assert moving[0, 1] > moving[0, 5]  # nearer frames are more alike


def test_reference_survives_the_config_round_trip_and_refuses_bad_input(tmp_path):
    reference = TARReference.from_matrix([[1.0, 0.2], [0.2, 1.0]], "ref.mp4", "ssim")
    config = GenerationConfig(tar_reference=reference, replace_attention="uniform:16")
    assert GenerationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="but TAR is off"):
        GenerationConfig(tar=None, tar_reference=reference)
    with pytest.raises(ValueError, match="square similarity matrix"):
        TARReference.from_matrix([[1.0, 0.2]], "ref.mp4", "ssim")
    with pytest.raises(ValueError, match="both set the attention of level"):
        GenerationConfig(tar=TARConfig.parse("64D1"), replace_attention="identity:64")
    with pytest.raises(ValueError, match="--tar-reference-metric must be one of"):
        reference_from_video(tmp_path / "any.mp4", "latent")


def run(pipe, **kwargs):
    return seeded_generation(pipe, **kwargs).frames


def test_a_static_reference_is_tar_with_an_all_ones_matrix(pipe, tmp_path):
    write_video(static(frames=5, size=32), tmp_path / "still.mp4")
    everywhere = TARConfig(sigmas={0: 1.0}, step_fraction=1.0)
    with_reference = run(pipe, tar=everywhere, tar_reference=tmp_path / "still.mp4")
    gaussian = run(pipe, tar=everywhere)
    for layer in temporal_attention_layers(pipe.backbone):  # the same by hand: ones at level 0, every step
        if layer.level == 0:
            layer.set_processor(TARProcessor(matrix=torch.ones(8, 8), fallback=layer.processor))
    try:
        by_hand = run(pipe, tar=None)
    finally:
        for layer in temporal_attention_layers(pipe.backbone):
            if isinstance(layer.processor, TARProcessor):
                layer.set_processor(layer.processor.fallback)
    np.testing.assert_allclose(with_reference, by_hand, atol=1e-6, rtol=0)
    assert np.abs(with_reference - gaussian).max() > 1e-4  # the reference really replaced the band


def test_a_reference_must_be_a_readable_video_of_two_frames(tmp_path):
    write_video(static(frames=1, size=32), tmp_path / "one.gif")
    with pytest.raises(ValueError, match=r"the TAR reference .*one\.gif has 1 frame; give a video of at least 2"):
        reference_from_video(tmp_path / "one.gif")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match=r"could not read the TAR reference .*notes\.mp4: not a video") as caught:
        reference_from_video(tmp_path / "notes.mp4")
    assert "\n" not in str(caught.value) and "ffmpeg" not in str(caught.value)
    (tmp_path / "frames").mkdir()
    with pytest.raises(ValueError, match=r"could not read the TAR reference .*frames: the folder holds no PNG"):
        reference_from_video(tmp_path / "frames")
    with pytest.raises(FileNotFoundError, match=r"the TAR reference .*gone\.mp4 does not exist"):
        reference_from_video(tmp_path / "gone.mp4")
