"""Weight-free video metrics on synthetic videos with known answers."""

import numpy as np
import pytest
from synthetic_videos import fade, moving_square, pan, static

from vstar.analysis.metrics import change_from_first, dynamic_degree, flicker, flow_magnitude


def test_a_static_video_neither_flickers_nor_moves():
    video = static()
    assert flicker(video) == 0
    assert flow_magnitude(video) < 1e-3
    np.testing.assert_array_equal(change_from_first(video), np.zeros(8))
    assert not dynamic_degree(video).dynamic and dynamic_degree(video).share == 0


def test_a_linear_fade_changes_linearly_from_the_first_frame():
    video = fade(frames=9)
    np.testing.assert_allclose(change_from_first(video), np.arange(9) / 8, atol=1e-6)
    assert flicker(video) == pytest.approx(1 / 8, abs=1e-6)


def test_uint8_frames_read_like_floats():
    video = fade(frames=5)
    as_bytes = (video * 255 + 0.5).astype(np.uint8)
    assert flicker(as_bytes) == pytest.approx(flicker(video), abs=1 / 255)


@pytest.mark.parametrize("size", [32, 64, 256])
@pytest.mark.parametrize("speed", [0.5, 1.0, 2.5])
def test_flow_magnitude_of_a_pan_is_its_speed(size, speed):
    assert flow_magnitude(pan(speed, frames=6, size=size)) == pytest.approx(speed, rel=0.15)


@pytest.mark.parametrize("size,speed", [(32, 1), (64, 2), (128, 3)])
def test_a_moving_square_is_measured_at_its_speed(size, speed):
    video = moving_square(speed, frames=6, size=size)
    share = 0.25  # the square covers a quarter of the frame; everything else is still
    assert flow_magnitude(video) == pytest.approx(speed * share, rel=0.2)  # edges of the square blur the flow
    np.testing.assert_allclose(dynamic_degree(video).scores, speed, rtol=0.15)  # the top 5% lie on the square


def test_dynamic_degree_threshold_scales_with_resolution():
    """VBench's 6 px at 256 px: 0.75 px per frame at 32 px. A square at twice the threshold moves, at half it
    does not, whatever the size."""
    for size in (32, 64, 128):
        threshold = 6 * size / 256
        fast = dynamic_degree(pan(2 * threshold, frames=8, size=size))
        slow = dynamic_degree(pan(threshold / 2, frames=8, size=size))
        assert fast.threshold == pytest.approx(threshold)
        assert fast.dynamic and fast.share == 1
        assert not slow.dynamic and slow.share == 0
    assert dynamic_degree(static(frames=16)).needed == 4


def test_bad_videos_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        flicker(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="at least 2 frames"):
        flow_magnitude(np.zeros((1, 8, 8, 3)))
