"""The pixel-space state classifier: accuracy on clean, noisy and blurred renders; helpers; robustness."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vstar.toy.classifier import (
    STATE_KEYS,
    FrameState,
    _largest_component,
    background_off_share,
    classify_clip,
    classify_frame,
    is_clean,
    matches,
    shows,
)
from vstar.toy.scenes import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    render_clip,
    render_frame,
    render_transition,
    sample_scene,
)


def _box_blur(frame: np.ndarray) -> np.ndarray:
    """3x3 box filter per channel, edges replicated: ``(H, W, 3) -> (H, W, 3)``."""
    h, w, _ = frame.shape
    padded = np.pad(frame, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return sum(padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9


def _accuracy(pairs: list[tuple[Scene, np.ndarray]]) -> dict[str, float]:
    states = [(scene, classify_frame(frame)) for scene, frame in pairs]
    return {k: float(np.mean([getattr(s, k) == getattr(fs, k) for s, fs in states])) for k in STATE_KEYS}


def _still_scenes(sizes=tuple(SIZES)) -> list[Scene]:
    return [
        Scene(shape, color, size, background, position)
        for shape, color, size, background, position in itertools.product(
            SHAPES, COLORS, sizes, BACKGROUNDS, POSITIONS
        )
    ]


def test_clean_renders_of_every_combination_are_read_exactly():
    scenes = _still_scenes()
    assert _accuracy([(s, render_frame(s)) for s in scenes]) == dict.fromkeys(STATE_KEYS, 1.0)


@pytest.mark.parametrize("motion", ["drifting left", "drifting right"])
def test_drift_extremes_keep_position(motion):
    scenes = [Scene(shape, "purple", size, "gray", position, motion)
              for shape, size, position in itertools.product(SHAPES, SIZES, POSITIONS)]
    pairs = [(s, render_frame(s, t)) for s in scenes for t in (0.0, 1.0)]
    assert _accuracy(pairs) == dict.fromkeys(STATE_KEYS, 1.0)


def test_noisy_random_scenes_are_read_at_least_95_percent():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(300)]
    pairs = [(s, render_clip(s, 1, rng=rng, noise=0.05)[0]) for s in scenes]
    accuracy = _accuracy(pairs)
    assert min(accuracy.values()) >= 0.95, accuracy


def test_blurred_large_shapes_keep_colour_and_shape():
    scenes = _still_scenes(sizes=("large",))
    accuracy = _accuracy([(s, _box_blur(render_frame(s))) for s in scenes])
    assert accuracy["color"] == accuracy["shape"] == 1.0, accuracy


def test_other_frame_sizes_and_uint8():
    rng = np.random.default_rng(1)
    for size in (24, 64):
        scene = sample_scene(rng)
        frame = render_frame(scene, size=size)
        assert matches(classify_frame(frame), scene, STATE_KEYS)
        assert classify_frame((frame * 255).round().astype(np.uint8)) == classify_frame(frame)


def test_a_stray_speck_does_not_move_the_shape():
    scene = Scene("triangle", "yellow", "large", "navy", "left")
    frame = render_frame(scene).copy()
    frame[2:4, 28:30] = COLORS["red"]  # a second, smaller blob at the top right
    assert matches(classify_frame(frame), scene, STATE_KEYS)


@pytest.mark.parametrize("background", list(BACKGROUNDS))
def test_empty_frames_show_no_shape(background):
    frame = np.broadcast_to(np.float32(BACKGROUNDS[background]), (32, 32, 3))
    state = classify_frame(frame)
    assert state == FrameState(None, None, None, background, None, 0.0)


def test_largest_component_matches_flood_fill():
    def flood_fill_largest(mask):
        h, w = mask.shape
        seen, best = np.zeros_like(mask), np.zeros_like(mask)
        for start in zip(*np.nonzero(mask), strict=True):
            if seen[start]:
                continue
            blob, stack = np.zeros_like(mask), [start]
            seen[start] = True
            while stack:
                y, x = stack.pop()
                blob[y, x] = True
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        if mask[yy, xx] and not seen[yy, xx]:
                            seen[yy, xx] = True
                            stack.append((yy, xx))
            if blob.sum() > best.sum():
                best = blob
        return best

    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(1, 24, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.7)
        if mask.any():
            assert _largest_component(mask).sum() == flood_fill_largest(mask).sum()


def test_classify_clip_and_shows_on_a_transition():
    a = Scene("circle", "red", "large", "black", "left")
    b = Scene("square", "blue", "small", "black", "right")
    clip = render_transition(a, b, num_frames=8)
    states = classify_clip(clip)
    assert [matches(s, a) for s in states] == [True] * 4 + [False] * 4
    assert [matches(s, b, ("color", "shape", "size", "position")) for s in states] == [False] * 4 + [True] * 4
    assert shows(clip, a) and shows(clip, b)
    assert not shows(clip, a, min_share=0.6)
    assert shows(clip[:4], a, min_share=1.0) and not shows(clip[:4], b)
    assert not shows(clip, Scene("circle", "green", "large", "black", "left"))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: classify_frame(np.zeros((32, 32))), r"frame must have shape \(H, W, 3\)"),
        (lambda: classify_frame(np.zeros((0, 5, 3))), r"frame must have shape \(H, W, 3\)"),
        (lambda: classify_clip(np.zeros((32, 32, 3))), r"frames must have shape \(F, H, W, 3\)"),
        (lambda: shows(np.zeros((0, 8, 8, 3)), Scene("circle", "red", "small", "black", "left")),
         "frames is empty"),
        (lambda: shows(np.zeros((1, 8, 8, 3)), Scene("circle", "red", "small", "black", "left"), min_share=2),
         "min_share must be in"),
        (lambda: matches(classify_frame(np.zeros((8, 8, 3))), Scene("circle", "red", "small", "black", "left"),
                         ("motion",)), "keys must be a non-empty subset"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20), st.just(3))))
def test_classify_frame_never_crashes_on_arbitrary_uint8_frames(frame):
    state = classify_frame(frame)
    assert state.background in BACKGROUNDS and 0.0 <= state.foreground_fraction <= 1.0
    assert state.color in (None, *COLORS) and state.shape in (None, *SHAPES)
    assert state.position in (None, *POSITIONS) and state.size in (None, *SIZES)


def test_clean_renders_are_clean_even_blurred_or_slightly_noisy():
    rng = np.random.default_rng(2)
    scenes = _still_scenes()
    assert all(background_off_share(render_frame(s)) == 0.0 for s in scenes)
    assert all(is_clean(_box_blur(render_frame(s))) for s in scenes)
    assert all(is_clean(render_clip(s, 1, rng=rng, noise=0.02)[0]) for s in scenes[:60])


def test_speckles_stray_blobs_and_empty_frames_are_not_clean():
    scene = Scene("circle", "red", "large", "black", "center")
    frame = render_frame(scene)
    assert is_clean(frame)
    speckled = frame.copy()
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 32, 60), rng.integers(0, 32, 60)
    far = np.hypot(ys + 0.5 - 16, xs + 0.5 - 16) > 9
    speckled[ys[far], xs[far]] = COLORS["blue"]
    assert background_off_share(speckled) >= 0.03 and not is_clean(speckled)
    stray = frame.copy()
    stray[1:7, 1:7] = COLORS["green"]  # a second shape: 36 px, about 4% of the background
    assert not is_clean(stray)
    assert is_clean(stray, max_off=0.05)
    assert background_off_share(np.zeros((32, 32, 3))) == 1.0 and not is_clean(np.zeros((32, 32, 3)))
    gradient = np.broadcast_to(np.linspace(0, 0.6, 32)[None, :, None], (32, 32, 3)).astype(np.float32)
    assert not is_clean(np.maximum(gradient, frame))  # a non-uniform background


def test_a_speck_touching_the_shape_edge_is_forgiven_only_within_the_margin():
    frame = render_frame(Scene("square", "white", "large", "black", "center")).copy()
    frame[16, 22] = 0.5  # right next to the edge (the square covers pixels 10-21): part of the margin
    assert background_off_share(frame) == 0.0
    frame[16, 27] = 0.5  # 4 px away: background
    assert background_off_share(frame) > 0.0
