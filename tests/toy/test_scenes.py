"""Toy scenes: vocabulary, validation, captions and their parsing, rendering."""

import itertools

import numpy as np
import pytest

from vstar.toy.scenes import (
    BACKGROUNDS,
    COLORS,
    MOTIONS,
    OPTIONAL_DETAILS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    all_captions,
    all_scenes,
    caption,
    parse_caption,
    render_clip,
    render_frame,
    render_transition,
    sample_scene,
    shape_coverage,
)


def test_palette_is_well_separated():
    colors = np.array(list(COLORS.values()))
    backgrounds = np.array(list(BACKGROUNDS.values()))
    between_colors = np.linalg.norm(colors[:, None] - colors[None], axis=-1)[~np.eye(len(colors), dtype=bool)]
    assert between_colors.min() > 0.5
    assert np.linalg.norm(colors[:, None] - backgrounds[None], axis=-1).min() > 0.5
    assert all(0 <= c <= 1 for rgb in [*COLORS.values(), *BACKGROUNDS.values()] for c in rgb)


@pytest.mark.parametrize(
    "field, value", [("shape", "hexagon"), ("color", "teal"), ("size", "huge"), ("background", "pink"),
                     ("position", "top"), ("motion", "spinning")]
)
def test_scene_rejects_unknown_words_and_names_valid_ones(field, value):
    kwargs = dict(shape="circle", color="red", size="small", background="black", position="left")
    kwargs[field] = value
    with pytest.raises(ValueError, match=f"unknown {field} '{value}'; valid values: "):
        Scene(**kwargs)


def test_caption_wording():
    scene = Scene("circle", "red", "small", "black", "left")
    assert caption(scene) == "a small red circle on a black background, on the left"
    moving = Scene("square", "blue", "large", "navy", "center", "drifting right")
    assert caption(moving) == "a large blue square on a navy background, in the center, drifting right"


def test_caption_can_leave_out_details():
    scene = Scene("square", "blue", "large", "navy", "right", "drifting left")
    assert caption(scene, omit=OPTIONAL_DETAILS) == "a blue square"
    assert caption(scene, omit=("size", "position", "motion")) == "a blue square on a navy background"
    assert caption(scene, omit=("background",)) == "a large blue square, on the right, drifting left"
    assert caption(scene, omit=("size", "background")) == "a blue square, on the right, drifting left"


@pytest.mark.parametrize("omit", [("colour",), ("shape",), ("size", "mood")])
def test_caption_refuses_to_leave_out_unknown_or_essential_details(omit):
    with pytest.raises(ValueError, match="cannot omit .*; omit any of size, background, position, motion"):
        caption(Scene("circle", "red", "small", "black", "left"), omit=omit)


def test_partial_captions_parse_back_to_what_they_name():
    scene = Scene("triangle", "green", "small", "gray", "left", "drifting right")
    for k in range(len(OPTIONAL_DETAILS) + 1):
        for omit in itertools.combinations(OPTIONAL_DETAILS, k):
            parsed = parse_caption(caption(scene, omit=omit))
            for field in ("shape", "color", "size", "background", "position", "motion"):
                if field not in omit:
                    assert getattr(parsed, field) == getattr(scene, field), (omit, field)


def test_all_captions_cover_every_combination_once_in_a_fixed_order():
    captions = all_captions()
    expected = len(SHAPES) * len(COLORS) * len(SIZES) * len(BACKGROUNDS) * len(POSITIONS) * len(MOTIONS)
    assert len(captions) == len(set(captions)) == expected
    assert captions == all_captions()
    assert captions[0] == caption(all_scenes()[0])


def test_parse_caption_inverts_caption():
    assert [parse_caption(c) for c in all_captions()] == all_scenes()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle turning into a blue square", Scene("circle", "red", "large", "black", "center")),
        ("A big Yellow triangle on a grey background drifting to the left",
         Scene("triangle", "yellow", "large", "gray", "center", "drifting left")),
        ("tiny white squares in the middle, moving right",
         Scene("square", "white", "small", "black", "center", "drifting right")),
        ("a purple circle on the right, on a navy background",
         Scene("circle", "purple", "large", "navy", "right")),
    ],
)
def test_parse_caption_is_tolerant(text, expected):
    assert parse_caption(text) == expected


@pytest.mark.parametrize("text", ["a red blob", "a circle", "", "a black background"])
def test_parse_caption_needs_shape_and_colour(text):
    assert parse_caption(text) is None


@pytest.mark.parametrize("shape, area_per_r2", [("circle", np.pi), ("square", 4.0), ("triangle", 2.0)])
def test_shape_coverage_area_matches_geometry(shape, area_per_r2):
    r = 5.3
    cover = shape_coverage(shape, 16.2, 15.7, r, 32, 32)
    assert cover.shape == (32, 32) and cover.dtype == np.float32
    assert 0 <= cover.min() and cover.max() <= 1
    assert cover.sum() == pytest.approx(area_per_r2 * r**2, rel=0.02)


def test_render_frame_is_antialiased_and_in_range():
    frame = render_frame(Scene("circle", "white", "large", "black", "center"))
    assert frame.shape == (32, 32, 3) and frame.dtype == np.float32
    assert frame.min() >= 0 and frame.max() <= 1
    levels = np.unique(frame[..., 0])
    assert len(levels) > 2  # edge pixels blend shape and background
    assert np.allclose(frame[0, 0], BACKGROUNDS["black"]) and np.allclose(frame[16, 16], COLORS["white"])


def test_render_frame_scales_with_size():
    scene = Scene("square", "white", "small", "black", "left")
    area32 = render_frame(scene, size=32)[..., 0].sum()
    area64 = render_frame(scene, size=64)[..., 0].sum()
    assert area64 == pytest.approx(4 * area32)


def test_render_is_deterministic():
    scene = Scene("triangle", "green", "large", "gray", "right", "drifting left")
    assert np.array_equal(render_clip(scene), render_clip(scene))
    noisy = [render_clip(scene, 4, rng=np.random.default_rng(3), noise=0.05) for _ in range(2)]
    assert np.array_equal(*noisy)
    assert noisy[0].dtype == np.float32 and noisy[0].min() >= 0 and noisy[0].max() <= 1
    assert not np.array_equal(noisy[0], render_clip(scene, 4))


def test_still_clips_repeat_one_frame():
    clip = render_clip(Scene("circle", "red", "small", "navy", "center"), num_frames=5)
    assert clip.shape == (5, 32, 32, 3)
    assert all(np.array_equal(frame, clip[0]) for frame in clip)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("motion, direction", [("drifting left", -1), ("drifting right", 1)])
@pytest.mark.parametrize("shape", SHAPES)
def test_drift_stays_in_frame_and_moves_the_stated_way(position, motion, direction, shape):
    scene = Scene(shape, "white", "large", "black", position, motion)
    clip = render_clip(scene, num_frames=8)
    area = clip[..., 0].sum(axis=(1, 2))  # white on black: channel sum is the covered area
    full_area = {"circle": np.pi, "square": 4.0, "triangle": 2.0}[shape] * SIZES["large"] ** 2
    assert area == pytest.approx(np.full(8, full_area), rel=0.005)  # nothing cut off by the frame edge
    centroid_x = (clip[..., 0].sum(axis=1) * (np.arange(32) + 0.5)).sum(axis=1) / area
    steps = np.diff(centroid_x) * direction
    assert (steps > 0).all()
    assert 2 <= centroid_x[-1] * direction - centroid_x[0] * direction <= 4  # a few pixels, not more


def test_render_transition_switches_at_the_middle():
    a = Scene("circle", "red", "large", "black", "center")
    b = Scene("square", "blue", "large", "black", "center")
    clip = render_transition(a, b, num_frames=6)
    assert clip.shape == (6, 32, 32, 3)
    assert all(np.array_equal(f, render_frame(a)) for f in clip[:3])
    assert all(np.array_equal(f, render_frame(b)) for f in clip[3:])


def test_sample_scene_is_seeded_and_respects_motion_prob():
    draw = [sample_scene(np.random.default_rng(7)) for _ in range(2)]
    assert draw[0] == draw[1]
    rng = np.random.default_rng(0)
    assert all(sample_scene(rng, motion_prob=0.0).motion == "still" for _ in range(50))
    assert all(sample_scene(rng, motion_prob=1.0).motion != "still" for _ in range(50))
    scenes = [sample_scene(rng) for _ in range(400)]
    assert {s.color for s in scenes} == set(COLORS) and {s.shape for s in scenes} == set(SHAPES)
    assert 0.2 < np.mean([s.motion != "still" for s in scenes]) < 0.4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: render_frame(s, t=1.5), "t must be in"),
        (lambda s: render_frame(s, size=0), "size must be >= 1"),
        (lambda s: render_clip(s, num_frames=0), "num_frames must be >= 1"),
        (lambda s: render_clip(s, noise=-0.1), "noise must be >= 0"),
        (lambda s: sample_scene(np.random.default_rng(0), motion_prob=2), "motion_prob must be in"),
        (lambda s: shape_coverage("blob", 1, 1, 1, 4, 4), "unknown shape 'blob'"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call(Scene("circle", "red", "small", "black", "left"))
